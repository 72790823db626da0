"""Loaders of the evaluation suite on fixtures with real rows (tests/fixtures/eval, see PROVENANCE.md)."""

import json
import os

import pytest
from conftest import require_shared_dir

from llamafactory_minor_eval.data import (
    benchmark_info,
    find_split_files,
    load_benchmark,
    load_split,
    select,
    shot_answer,
    shots_for,
)
from llamafactory_minor_eval.deviation import load_deviation_data, m_theta
from llamafactory_minor_eval.errors import EvalError

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures", "eval")


def test_ceval_dev_and_val_with_mapping():
    dev = load_split("ceval", f"{FIX}/ceval", "dev")
    assert [s.subject for s in dev] == ["accountant"] * 3 + ["college_economics"] * 2
    first = dev[0]
    assert first.id == "0" and first.gold == "B"
    assert first.question.startswith("甲公司是国内一家上市公司") and first.question.endswith("____。")
    assert first.options == {"A": "增量预算", "B": "零基预算", "C": "固定预算", "D": "弹性预算"}
    assert first.category == "Other"  # from mapping.json
    assert all("\r" not in s.question + "".join(s.options.values()) for s in dev)
    val = load_split("ceval", f"{FIX}/ceval", "val")
    assert {s.subject for s in val} == {"accountant", "high_school_mathematics"}
    assert {s.category for s in val if s.subject == "high_school_mathematics"} == {"STEM"}
    assert load_split("ceval", f"{FIX}/ceval", "validation") == val  # split alias


def test_financeiq_unnamed_index_and_capitalised_columns():
    rows = load_split("financeiq", f"{FIX}/financeiq", "dev")
    assert {s.subject for s in rows} == {"税务师", "银行从业资格"}
    tax = [s for s in rows if s.subject == "税务师"]
    assert [s.id for s in tax] == ["0", "1", "2"]
    assert tax[0].gold == "A" and tax[0].options["A"] == "自卸式垃圾车"
    assert tax[1].gold == "C"


def test_fineval_plain_and_bom_with_trailing_spaces_agree():
    plain = load_split("fineval", f"{FIX}/fineval", "dev")
    bom = load_split("fineval", f"{FIX}/fineval_bom", "dev")
    assert len(plain) == 6
    assert [(s.subject, s.id, s.question, s.options, s.gold) for s in plain] == [
        (s.subject, s.id, s.question, s.options, s.gold) for s in bom
    ]
    assert plain[0].subject == "accounting" and plain[0].gold == "B"


def test_gsm8k_jsonl_gold_numbers():
    rows = load_split("gsm8k", f"{FIX}/gsm8k", "train")
    assert len(rows) == 6
    assert rows[0].gold == "72" and rows[1].gold == "10"
    assert rows[0].question.startswith("Natalia sold clips")
    assert "So the answer is: 72" in shot_answer(rows[0]) and "<<" not in shot_answer(rows[0])


def test_hub_parquet_layout_is_understood(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    src = load_split("ceval", f"{FIX}/ceval", "val")
    folder = tmp_path / "accountant"
    folder.mkdir()
    frame = pd.DataFrame(
        [
            {
                "id": int(s.id),
                "question": s.question,
                "A": s.options["A"],
                "B": s.options["B"],
                "C": s.options["C"],
                "D": s.options["D"],
                "answer": s.gold,
                "explanation": "",
            }
            for s in src
            if s.subject == "accountant"
        ]
    )
    frame.to_parquet(folder / "val-00000-of-00001.parquet")
    assert [s.subject for s in load_split("ceval", tmp_path, "val")] == ["accountant"] * 3
    main = tmp_path / "gsm" / "main"
    main.mkdir(parents=True)
    (tmp_path / "gsm" / "socratic").mkdir()
    pd.DataFrame([{"question": "q", "answer": "x\n#### 5"}]).to_parquet(main / "test-00000-of-00001.parquet")
    pd.DataFrame([{"question": "q", "answer": "x\n#### 6"}]).to_parquet(
        tmp_path / "gsm" / "socratic" / "test-00000-of-00001.parquet"
    )
    rows = load_split("gsm8k", tmp_path / "gsm", "test")
    assert [r.gold for r in rows] == ["5"]


def test_find_split_files_names_subjects():
    pairs = find_split_files(__import__("pathlib").Path(f"{FIX}/ceval"), "dev", "ceval")
    assert [p[0] for p in pairs] == ["accountant", "college_economics"]


def test_unknown_benchmark_lists_valid_ones():
    with pytest.raises(
        EvalError, match=r"unknown benchmark 'mmlu'; valid benchmarks: ceval, financeiq, fineval, gsm8k"
    ):
        benchmark_info("mmlu")
    assert benchmark_info("C-Eval").name == "ceval"


def test_missing_split_names_the_available_ones():
    with pytest.raises(EvalError, match=r"no 'test' split .*splits found there: dev, val"):
        load_split("ceval", f"{FIX}/ceval", "test")


def test_missing_column_names_file_and_column(tmp_path):
    (tmp_path / "dev").mkdir()
    src = open(f"{FIX}/financeiq/dev/税务师.csv", encoding="utf-8").read()
    (tmp_path / "dev" / "税务师.csv").write_text(src.replace(",Answer", ",Label"), encoding="utf-8")
    with pytest.raises(EvalError) as info:
        load_split("financeiq", tmp_path, "dev")
    msg = str(info.value)
    assert "税务师.csv" in msg and "missing column 'answer'" in msg and "Label" in msg


def test_bad_answer_and_empty_answer_name_the_row(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "x_dev.csv").write_text("id,question,A,B,C,D,answer\r\n0,q,a,b,c,d,E\r\n", encoding="utf-8")
    with pytest.raises(EvalError, match=r"x_dev.csv:line 2: answer 'E' is not one of A, B, C, D"):
        load_split("fineval", tmp_path, "dev")
    (tmp_path / "dev" / "x_dev.csv").write_text("id,question,A,B,C,D,answer\r\n0,q,a,b,c,d,\r\n", encoding="utf-8")
    with pytest.raises(EvalError, match="every answer is empty .*without public answers"):
        load_split("fineval", tmp_path, "dev")
    (tmp_path / "dev" / "x_dev.csv").write_text(
        "id,question,A,B,C,D,answer\r\n0,q,a,b,c,d,A\r\n1,q,a,b,c,d,\r\n", encoding="utf-8"
    )
    with pytest.raises(EvalError, match=r"x_dev.csv:line 3: empty answer \(the other rows"):
        load_split("fineval", tmp_path, "dev")


def _copy_split(src_dir, dst_dir):
    import shutil

    shutil.copytree(src_dir, dst_dir)


def test_csv_cut_mid_row_is_reported_as_cut_not_as_missing_answers(tmp_path):
    text = open(f"{FIX}/fineval/dev/accounting_dev.csv", encoding="utf-8", newline="").read()
    (tmp_path / "dev").mkdir()
    cut = text[: text.rindex("\r\n", 0, len(text) - 2) + 2] + text.splitlines()[-1][:25]  # last row cut short
    (tmp_path / "dev" / "accounting_dev.csv").write_text(cut, encoding="utf-8", newline="")
    with pytest.raises(EvalError) as info:
        load_split("fineval", tmp_path, "dev")
    msg = str(info.value)
    assert "accounting_dev.csv: line 4 has" in msg and "ends in the middle of this row" in msg
    assert "no public answers" not in msg
    # cut inside a quoted field (the question text is quoted in the source)
    quoted = text.split("\r\n")[0] + '\r\n0,"a question whose closing quote was lost, A,B\r\n'
    (tmp_path / "dev" / "accounting_dev.csv").write_text(quoted, encoding="utf-8", newline="")
    with pytest.raises(EvalError, match="cut off"):
        load_split("fineval", tmp_path, "dev")


def test_only_the_split_folder_is_read_and_other_copies_are_named(tmp_path):
    # FinEval's upstream layout: val/ beside sufe_data1/val/ -- the second is never merged in
    _copy_split(f"{FIX}/fineval/dev", tmp_path / "dev")
    _copy_split(f"{FIX}/fineval_bom/dev", tmp_path / "sufe_data1" / "dev")
    notes = []
    rows = load_split("fineval", tmp_path, "dev", notes)
    assert len(rows) == 6 and len({s.key for s in rows}) == 6
    assert any("sufe_data1" in n and "not read" in n and "--data fineval=" in n for n in notes), notes
    data = load_benchmark("fineval", "dev", source=str(tmp_path))
    assert data.n_before_sampling == 6 and data.notes == notes
    # only the nested copy: the error points at it instead of reading it
    import shutil

    shutil.rmtree(tmp_path / "dev")
    with pytest.raises(EvalError, match=r"no 'dev' split .*sufe_data1/dev"):
        load_split("fineval", tmp_path, "dev")


def test_duplicate_subjects_and_keys_are_errors_naming_both_files(tmp_path):
    _copy_split(f"{FIX}/fineval/dev", tmp_path / "dev")
    import shutil

    shutil.copy(tmp_path / "dev" / "accounting_dev.csv", tmp_path / "dev" / "accounting.csv")
    with pytest.raises(EvalError) as info:
        load_split("fineval", tmp_path, "dev")
    msg = str(info.value)
    assert "subject 'accounting'" in msg and "accounting.csv" in msg and "accounting_dev.csv" in msg
    (tmp_path / "dev" / "accounting.csv").unlink()
    text = open(tmp_path / "dev" / "finance_dev.csv", encoding="utf-8", newline="").read()
    lines = text.split("\r\n")
    lines[2] = lines[1]  # the same id twice
    (tmp_path / "dev" / "finance_dev.csv").write_text("\r\n".join(lines), encoding="utf-8", newline="")
    with pytest.raises(EvalError, match=r"id '0' appears twice in .*finance_dev.csv \(.*line 2 and .*line 3\)"):
        load_split("fineval", tmp_path, "dev")
    # GSM8K: two records with the same id field
    (tmp_path / "g").mkdir()
    recs = [{"id": "7", "question": "q", "answer": "#### 1"}, {"id": "7", "question": "r", "answer": "#### 2"}]
    (tmp_path / "g" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    with pytest.raises(EvalError, match=r"question 'gsm8k/7' appears twice, at .*test.jsonl:line 1 and at .*line 2"):
        load_split("gsm8k", tmp_path / "g", "test")


def test_few_shot_without_its_pool_names_the_pool_not_split(tmp_path):
    text = open(f"{FIX}/financeiq/dev/税务师.csv", encoding="utf-8").read()
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "税务师.csv").write_text(text, encoding="utf-8")
    assert len(load_benchmark("financeiq", "test", source=str(tmp_path)).samples) == 3
    with pytest.raises(EvalError) as info:
        load_benchmark("financeiq", "test", source=str(tmp_path), few_shot=2)
    msg = str(info.value)
    assert "--few-shot 2 takes its examples from the 'dev' split" in msg and "--few-shot 0" in msg
    assert "not the few-shot pool" in msg


def test_first_n_and_per_benchmark_limits():
    rows = load_split("ceval", f"{FIX}/ceval", "dev")
    first = select(rows, "ceval", limit=2, limit_mode="first")
    assert [s.key for s in first] == [s.key for s in rows[:2]]
    per = select(rows, "ceval", limit_per_subject=1, limit_mode="first")
    assert [s.key for s in per] == ["accountant/0", "college_economics/0"]
    with pytest.raises(EvalError, match="limit_mode must be one of random, first"):
        select(rows, "ceval", limit=2, limit_mode="head")
    from llamafactory_minor_eval.config import build_config

    cfg = build_config({"checkpoints": ["a/b"], "benchmarks": ["ceval", "gsm8k"], "limit": {"gsm8k": 200}}, {})
    assert cfg.limit_for("gsm8k") == 200 and cfg.limit_for("ceval") is None
    cfg = build_config(
        None,
        {"models": None, "limit": {"*": "50", "GSM8K": "10"}, "limit_mode": "first", "benchmarks": ["ceval", "gsm8k"]}
        | {"models": [__import__("llamafactory_minor_eval.models", fromlist=["Checkpoint"]).Checkpoint("a", "a/b")]},
    )
    assert cfg.limit_for("gsm8k") == 10 and cfg.limit_for("ceval") == 50 and cfg.limit_mode == "first"
    with pytest.raises(EvalError, match="limit of gsm8k must be a positive number"):
        build_config({"checkpoints": ["a/b"], "benchmarks": ["gsm8k"], "limit": {"gsm8k": 0}}, {})


def test_gsm8k_without_gold_line(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "42"}) + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match=r"test.jsonl:line 1: the gold answer has no '####'"):
        load_split("gsm8k", tmp_path, "test")


def test_select_is_seeded_and_keeps_file_order():
    rows = load_split("gsm8k", f"{FIX}/gsm8k", "train")
    a = select(rows, "gsm8k", limit=3, seed=1)
    b = select(rows, "gsm8k", limit=3, seed=1)
    c = select(rows, "gsm8k", limit=3, seed=2)
    assert [s.id for s in a] == [s.id for s in b]
    assert [int(s.id) for s in a] == sorted(int(s.id) for s in a)
    assert len(c) == 3
    assert len(select(rows, "gsm8k", limit=100)) == 6
    mc = load_split("ceval", f"{FIX}/ceval", "dev")
    per = select(mc, "ceval", limit_per_subject=1, seed=0)
    assert sorted(s.subject for s in per) == ["accountant", "college_economics"]


def test_subject_filter_and_empty_result():
    with pytest.raises(
        EvalError, match=r"unknown subject 'physics'; subjects in this split: accountant, college_economics"
    ):
        load_benchmark("ceval", split="dev", source=f"{FIX}/ceval", subjects=["physics"])
    data = load_benchmark("ceval", split="dev", source=f"{FIX}/ceval", subjects=["college_economics"])
    assert {s.subject for s in data.samples} == {"college_economics"}
    with pytest.raises(EvalError, match="no questions left after filtering"):
        select([], "ceval")


def test_few_shot_from_dev_never_the_question_itself():
    data = load_benchmark("ceval", split="val", source=f"{FIX}/ceval", few_shot=5)
    acc = [s for s in data.samples if s.subject == "accountant"][0]
    shots = shots_for(acc, data, 5)
    assert len(shots) == 3 and all(s.subject == "accountant" for s in shots)
    dev = load_benchmark("ceval", split="dev", source=f"{FIX}/ceval", few_shot=5)
    first = dev.samples[0]
    assert first.key not in [s.key for s in shots_for(first, dev, 5)]
    assert len(shots_for(first, dev, 5)) == 2
    assert shot_answer(shots[0]) == shots[0].gold


def test_data_dir_and_missing_folders(tmp_path):
    data = load_benchmark("fineval", split="dev", data_dir=FIX)
    assert len(data.samples) == 6
    with pytest.raises(EvalError, match="no folder 'gsm8k' in data dir"):
        load_benchmark("gsm8k", split="train", data_dir=str(tmp_path))
    with pytest.raises(EvalError, match="does not exist"):
        load_benchmark("gsm8k", split="train", source=str(tmp_path / "nope"))


def test_deviation_data_formats_and_metric(tmp_path):
    alpaca = load_deviation_data(f"{FIX}/deviation/alpaca_mini.json")
    assert len(alpaca) == 6 and alpaca[0].answer
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {
            "conversations": [{"from": "human", "value": "q"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        },
        {"prompt": "p", "response": "r"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = load_deviation_data(str(path))
    assert [(s.prompt, s.answer) for s in got] == [("hi", "hello"), ("q", "good"), ("p", "r")]
    assert len(load_deviation_data(f"{FIX}/deviation/alpaca_mini.json", limit=2, seed=0)) == 2
    with pytest.raises(EvalError, match="does not exist"):
        load_deviation_data(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text(json.dumps([{"foo": 1}]), encoding="utf-8")
    with pytest.raises(EvalError, match="none of the known layouts"):
        load_deviation_data(str(tmp_path / "bad.json"))
    # Eq. 8: mean over samples of (logp_theta - logp_ref) / m
    assert m_theta([-10.0, -4.0], [-12.0, -4.0], [4, 2]) == pytest.approx(((2 / 4) + 0) / 2)


def test_real_shared_data_loads_completely():
    data = os.path.join(require_shared_dir(), "data")  # skips without ../shared; fails under CI=true
    assert len(load_split("ceval", f"{data}/ceval", "dev")) == 260
    assert len(load_split("ceval", f"{data}/ceval", "val")) == 141
    assert len(load_split("financeiq", f"{data}/financeiq", "dev")) == 50
    fin = load_split("fineval", f"{data}/fineval", "dev")
    assert len(fin) == 170 and len({s.subject for s in fin}) == 34
    golds = [s.gold for s in fin]
    assert (golds.count("A"), golds.count("B"), golds.count("C"), golds.count("D")) == (51, 43, 46, 30)
    gsm = load_split("gsm8k", f"{data}/gsm8k", "train")
    assert len(gsm) == 7473
    cats = {s.category for s in load_split("ceval", f"{data}/ceval", "dev")}
    assert cats == {"STEM", "Social Sciences", "Humanities", "Other"}
