"""Content keys: rows LF keeps get the key of their own content, also when LF drops malformed rows."""

import llamafactory_minor  # noqa: F401  (activates the plugin's LF patches)
from llamafactory_minor.integration.data import _KeyedProcessor, sample_key


def _examples(rows):
    return {
        "_prompt": [r[0] for r in rows],
        "_response": [r[1] for r in rows],
        "_system": ["" for _ in rows],
        "_tools": ["" for _ in rows],
        "_images": [None for _ in rows],
        "_videos": [None for _ in rows],
        "_audios": [None for _ in rows],
    }


def test_sample_key_is_content_addressed():
    p = [{"role": "user", "content": "hi"}]
    r = [{"role": "assistant", "content": "hello"}]
    assert sample_key(p, r, "", "") == sample_key(p, r, None, None)
    assert sample_key(p, r, "", "") != sample_key(p, [{"role": "assistant", "content": "hello!"}], "", "")
    assert sample_key(p, r, "", "") != sample_key(p, r, "system prompt", "")
    assert len(sample_key(p, r, "", "")) == 16


def test_keyed_processor_follows_lf_when_it_drops_rows(tiny_model):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    data_args = DataArguments(template="smollm2", cutoff_len=64)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    lf = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=data_args)
    good1 = ([{"role": "user", "content": "one"}], [{"role": "assistant", "content": "uno"}])
    bad = (
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
        [{"role": "assistant", "content": "z"}],
    )  # even number of prompt turns: LF drops it
    good2 = ([{"role": "user", "content": "two"}], [{"role": "assistant", "content": "dos"}])
    examples = _examples([good1, bad, good2])
    plain = lf.preprocess_dataset(examples)
    keyed = _KeyedProcessor(lf).preprocess_dataset(examples)
    assert keyed["input_ids"] == plain["input_ids"] and keyed["labels"] == plain["labels"]
    assert keyed["sample_key"] == [sample_key(*good1, "", ""), sample_key(*good2, "", "")]


def _lf_processor(tiny_model, **data_kwargs):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    data_args = DataArguments(template="smollm2", cutoff_len=64, **data_kwargs)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    return SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=data_args)


def _many(n):
    return [
        ([{"role": "user", "content": f"question {i}"}], [{"role": "assistant", "content": f"answer {i}"}])
        for i in range(n)
    ]


def test_keyed_processor_survives_pickling(tiny_model):
    """datasets.map pickles the processor into its workers (preprocessing_num_workers > 1)."""
    import pickle

    keyed = _KeyedProcessor(_lf_processor(tiny_model))
    clone = pickle.loads(pickle.dumps(keyed))
    examples = _examples(_many(3))
    assert clone.preprocess_dataset(examples) == keyed.preprocess_dataset(examples)


def test_keyed_rows_are_the_same_with_several_workers(tiny_model):
    from datasets import Dataset

    keyed = _KeyedProcessor(_lf_processor(tiny_model))
    rows = _many(24) + [
        (
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
            [{"role": "assistant", "content": "z"}],
        )
    ]  # LF drops this one
    raw = Dataset.from_dict(_examples(rows))
    one = raw.map(keyed.preprocess_dataset, batched=True, batch_size=5, remove_columns=raw.column_names)
    four = raw.map(keyed.preprocess_dataset, batched=True, batch_size=5, num_proc=4, remove_columns=raw.column_names)
    assert len(one) == 24 and one.to_dict() == four.to_dict()
    assert one["sample_key"] == [sample_key(p, r, "", "") for p, r in rows[:24]]


def test_token_key_follows_what_the_model_sees(tiny_model):
    """A change that alters every tokenized row (default_system) changes every token key, not the content key."""
    examples = _examples(_many(4))
    plain = _KeyedProcessor(_lf_processor(tiny_model)).preprocess_dataset(examples)
    system = _KeyedProcessor(_lf_processor(tiny_model, default_system="You are terse.")).preprocess_dataset(examples)
    assert plain["sample_key"] == system["sample_key"]
    assert not set(plain["token_key"]) & set(system["token_key"])
    assert len(set(plain["token_key"])) == 4
    for _ids, labels, count in zip(plain["input_ids"], plain["labels"], plain["answer_tokens"]):
        assert count == [sum(1 for x in labels[1:] if x != -100)] and count[0] > 0
    shorter = _KeyedProcessor(_lf_processor(tiny_model)).preprocess_dataset(
        _examples([(p, [{"role": "assistant", "content": r[0]["content"] + "!"}]) for p, r in _many(4)])
    )
    assert not set(plain["token_key"]) & set(shorter["token_key"])
