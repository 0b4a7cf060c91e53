"""The CLI end to end on the tiny ADI collection: exit codes, JSON output, index/search/evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pretriever.cli import main


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\nfrom pretriever.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "for sub in (['evaluate', '--help'], ['index', 'bm25', '--help'], ['data', 'check', '-h']):\n"
        "    try:\n        main(sub)\n    except SystemExit:\n        pass\n"
        "print('HEAVY', sorted({'torch', 'bm25s', 'ranx', 'numba', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    assert "pretriever evaluate --dataset scifact --retriever bm25" in out.stdout


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--dataset", "adi"])  # --retriever missing
    assert exc.value.code == 2
    assert main(["evaluate", "--dataset", "adi", "--retriever", "bm25", "--metrics", "ndgc@10"]) == 2
    assert "unknown metric 'ndgc@10'" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "adi", "--retriever", "bm25", "-m", "nDCG@10"]) == 2
    assert "-m is --model on every command; give metrics with --metrics" in capsys.readouterr().err
    assert main([]) == 2


def test_missing_dataset_exits_1_with_cause_first(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    assert main(["data", "check", "--dataset", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("pretriever: error:") and "nope" in err[0]


def test_data_check(real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "--dataset", "adi"]) == 0
    out = capsys.readouterr().out
    assert "documents    82" in out and "qrels/test" in out and "ok:" in out
    assert main(["data", "check", "cranfield", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 1400 and stats["empty_documents"] == 2
    assert stats["splits"]["test"]["queries"] == 225


def test_evaluate_json_and_save_run(real_data: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    run_file = tmp_path / "adi.trec"
    rc = main(["evaluate", "--dataset", "adi", "--retriever", "bm25", "--json",
               "--save-run", str(run_file), "--metrics", "nDCG@10", "Recall@100"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["metrics"]) == {"nDCG@10", "Recall@100"}
    # measured with this command (bm25s, stopwords + Snowball, title + text): ADI has 35 queries
    assert data["metrics"] == pytest.approx({"nDCG@10": 0.4938, "Recall@100": 0.9103}, abs=5e-4)
    assert data["dataset"] == "adi" and data["split"] == "test"
    # the saved run evaluates to the same numbers, and compares against bm25 with p = 1
    assert main(["evaluate", "-d", "adi", "-r", "bm25", "-r", str(run_file), "--json",
                 "--metrics", "nDCG@10", "Recall@100"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["runs"][1]["metrics"] == pytest.approx(data["metrics"], abs=1e-6)
    assert both["significance"][0]["p_value"] == 1.0


def test_index_search_evaluate_round_trip(real_data: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adi-bm25"
    assert main(["index", "bm25", "--dataset", "adi", "--out", str(out)]) == 0
    assert (out / "manifest.json").is_file()
    assert main(["index", "bm25", "--dataset", "adi", "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["search", "--index", str(out), "information retrieval", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert main(["evaluate", "-d", "adi", "-r", str(out), "--metrics", "nDCG@10"]) == 0
    table = capsys.readouterr().out
    assert "adi-bm25" in table and "nDCG@10" in table


def test_index_from_another_corpus_is_refused(real_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adi-bm25"
    assert main(["index", "bm25", "--dataset", "adi", "--out", str(out)]) == 0
    assert main(["evaluate", "-d", "cranfield", "-r", str(out)]) == 2
    assert "another corpus" in capsys.readouterr().err


def _subcommands() -> dict[str, object]:
    """Every leaf subcommand's parser, by its name ("index dense", "train", ...)."""
    import argparse

    from pretriever.cli import build_parser

    found: dict[str, object] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[prefix.strip()] = parser
        for action in subs:
            for name, child in action.choices.items():
                walk(child, f"{prefix} {name}")

    walk(build_parser(), "")
    return found


def test_every_command_speaks_one_vocabulary() -> None:
    """The README's table: one spelling and one meaning per concept, on every command."""
    commands = _subcommands()
    assert {"train", "pretrain", "train-reranker", "evaluate", "rerank", "score", "index dense",
            "index rerank", "optimize", "soup", "quickstart"} <= set(commands)
    retired = {"--from", "--run", "--rerank", "--rerank-depth", "--force", "--retriever-depth"}
    for name, parser in commands.items():
        options = {o: a for a in parser._actions for o in a.option_strings}
        assert not retired & set(options), f"{name} still takes {retired & set(options)}"
        if "-m" in options:
            assert "--model" in options["-m"].option_strings, f"{name}: -m is not --model"
        if "--base" in options:
            assert name in ("train", "pretrain", "train-reranker", "train-colbert"), \
                f"{name}: --base outside a trainer"
            assert options["--base"] is options["--model"]
        if "--dataset" in options:
            assert "--lenient" in options, f"{name} reads a dataset without --lenient"
        if "--out" in options:
            assert "--overwrite" in options, f"{name} writes --out without --overwrite"
        if "--precision" in options:
            choices = set(options["--precision"].choices)
            assert choices <= {"auto", "float32", "bfloat16", "float16", "int8"}, f"{name}: {choices}"
        if "--depth" in options:
            assert "first-stage candidates read per query" in options["--depth"].help, name
        if name not in ("search", "context", "serve"):  # one query: nothing to report; serve: --log-level
            assert "--quiet" in options, f"{name} has no --quiet"


def test_index_bm25_prf_is_recorded_and_unknown_methods_refused(
        real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adi-rm3"
    assert main(["index", "bm25", "--dataset", "adi", "--prf", "rm3:fb_docs=5", "--out", str(out), "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["feedback"]["method"] == "rm3"
    assert manifest["params"]["feedback"]["fb_docs"] == 5
    assert (out / "doc_terms.npz").is_file()
    assert main(["index", "bm25", "--dataset", "adi", "--prf", "rm4", "--out", str(tmp_path / "x")]) == 2
    assert "unknown feedback method 'rm4'; choose one of rm3, rocchio" in capsys.readouterr().err
