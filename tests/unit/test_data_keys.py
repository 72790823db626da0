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
    bad = ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
           [{"role": "assistant", "content": "z"}])  # even number of prompt turns: LF drops it
    good2 = ([{"role": "user", "content": "two"}], [{"role": "assistant", "content": "dos"}])
    examples = _examples([good1, bad, good2])
    plain = lf.preprocess_dataset(examples)
    keyed = _KeyedProcessor(lf).preprocess_dataset(examples)
    assert keyed["input_ids"] == plain["input_ids"] and keyed["labels"] == plain["labels"]
    assert keyed["sample_key"] == [sample_key(*good1, "", ""), sample_key(*good2, "", "")]
