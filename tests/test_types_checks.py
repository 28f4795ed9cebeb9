"""The column types beyond the tabular three at check time: every diagnostic with its
file:line:col and hint, dirty cells as warnings (and errors above 1%), and the
preprocessing of each type on small real-looking cells. Fast: no training."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from helpers_frontend import mlc, write_files

from mlc.runtime.types import cells, dates, labels, text, vectors


def _csv(header: str, rows: list[str]) -> str:
    return header + "\n" + "".join(r + "\n" for r in rows)


TAGS = _csv("tags,when,label", [f"{t},2021-0{1 + i % 9}-1{i % 10},{'yes' if i % 2 else 'no'}"
                                for i, t in enumerate(["a|b", "b", "c|a|b", "a", "b|c"] * 40)])


def _check(tmp_path, program: str, files: dict, ok: bool = False):
    write_files(tmp_path, {**files, "prog.dml": program})
    r = mlc(tmp_path, "check", "prog.dml")
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == (0 if ok else 1), (r.returncode, r.stdout, r.stderr)
    return r


def test_set_separator_that_splits_nothing(tmp_path):
    r = _check(tmp_path, 'data "d.csv"\ninput tags : set { separator = ";" }\noutput label : binary\n',
               {"d.csv": TAGS})
    assert r.first == ("prog.dml:2:14: error: column `tags` is declared `set` but has no cell that `;` "
                       "splits into two labels")
    assert r.hint == "check the separator; a column with one label per cell is a `category`"
    assert "^^^" in r.stderr


def test_set_column_with_one_label_per_cell(tmp_path):
    csv = _csv("tags,label", [f"{t},{'yes' if i % 2 else 'no'}" for i, t in enumerate("abcde" * 8)])
    r = _check(tmp_path, 'data "d.csv"\ninput tags : set\noutput label : binary\n', {"d.csv": csv})
    assert r.first.startswith("prog.dml:2:14: error: column `tags` is declared `set` but holds a single "
                              "label in every cell")
    assert r.hint.startswith("declare it as `category`")


def test_date_that_never_parses(tmp_path):
    r = _check(tmp_path, 'data "d.csv"\ninput tags : date\noutput label : binary\n', {"d.csv": TAGS})
    assert r.first == ("prog.dml:2:14: error: column `tags` is declared `date` but holds no cell that reads "
                       "as a date (such as `a|b`)")
    assert r.hint == 'give its format, such as `{ format = "%d/%m/%Y %H:%M" }`'


def test_date_with_a_format_that_does_not_match(tmp_path):
    csv = _csv("when,label", [f"{1 + i % 28}.03.2021,{'yes' if i % 2 else 'no'}" for i in range(40)])
    r = _check(tmp_path, 'data "d.csv"\ninput when : date { format = "%d/%m/%Y" }\noutput label : binary\n',
               {"d.csv": csv})
    assert r.first.startswith("prog.dml:2:14: error: column `when` is declared `date` but holds no cell")
    assert r.hint == "`%d/%m/%Y` does not match the cells; see strftime formats"


def test_text_cannot_be_an_output(tmp_path):
    r = _check(tmp_path, 'data "d.csv"\ninput when : date\noutput tags : text\n', {"d.csv": TAGS})
    assert r.first == "prog.dml:3:15: error: a `text` column can be an input, not an output"
    assert r.hint == "outputs are `number`, `binary`, `category`, `set`, `vector`"


def test_transformer_heads_must_divide_its_size(tmp_path):
    r = _check(tmp_path, 'data "d.csv"\ninput tags : text { encoder = transformer(size = 30, heads = 4) }\n'
               'output label : binary\n', {"d.csv": TAGS})
    assert r.first == "prog.dml:2:21: error: a transformer of size 30 cannot split into 4 heads"
    assert r.hint == "make `size` a multiple of `heads`, such as size = 32"


def test_a_few_dirty_cells_are_missing_with_a_warning(tmp_path):
    rows = [f"2021-03-{1 + i % 28:02d},{i % 7}.5,{'yes' if i % 3 else 'no'}" for i in range(300)]
    rows[4] = "20,1.5,yes"  # a date column holding 20: line 6 of the file
    rows[9] = "2021-03-02,oops,no"  # line 11
    r = _check(tmp_path, 'data "d.csv"\ninput when : date\ninput x : number\noutput label : binary\n',
               {"d.csv": _csv("when,x,label", rows)}, ok=True)
    assert ("prog.dml:2:14: warning: 1 cell of `when` do not read as `date` and are treated as missing: "
            "`20` (line 6)") in r.stderr
    assert "prog.dml:3:11: warning: 1 cell of `x` do not read as `number` and are treated as missing: " \
           "`oops` (line 11)" in r.stderr


def test_more_than_one_percent_dirty_is_an_error(tmp_path):
    rows = [f"{'bad' if i % 20 == 0 else '2021-03-04'},{'yes' if i % 3 else 'no'}" for i in range(100)]
    r = _check(tmp_path, 'data "d.csv"\ninput when : date\noutput label : binary\n',
               {"d.csv": _csv("when,label", rows)})
    assert r.first == ("prog.dml:2:14: error: column `when` is declared `date` but 5 of 100 cells (5.0%) do "
                       "not read as one, such as `bad` (line 2), `bad` (line 22), `bad` (line 42)")


# ---- preprocessing of each type --------------------------------------------------------
def test_separator_inference_prefers_pipes_over_spaces_in_labels():
    col = pa.array(["Science Fiction|Drama", "Drama", "Comedy|Drama", None, "Science Fiction"])
    assert cells.infer_separator(col) == "|"
    assert cells.infer_separator(pa.array(["a b", "c"])) == " "
    assert cells.infer_separator(pa.array(["a", "b"])) is None


def test_text_vocabulary_comes_from_training_rows_and_unseen_words_are_unknown():
    train = pa.array(["Great coffee, great price!", "great taste", None, "bad coffee"])
    opts = {"encoder": {"name": "bag", "size": 8, "buckets": 16},
            "tokenizer": {"name": "word", "vocab": 100, "min_count": 2}, "max_len": "auto"}
    st = text.fit(train, opts, "text")
    assert st["vocab"] == ["great", "coffee"]  # seen twice or more; lower-cased
    enc = text.encode(pa.array(["GREAT unseen coffee"]), st, "r")
    ids, w = enc["bag_r"][0], enc["bagw_r"][0]
    assert list(ids[:3]) == [1, 0, 2] and list(w[:3]) == [1, 1, 1]  # the unseen word is <unknown> (0)
    assert (ids[st["max_len"]:][w[st["max_len"]:] > 0] > 2).all()  # bigrams hash after the vocabulary
    assert ids.max() < text.table_rows(st)


def test_bpe_tokenizer_round_trips_through_its_state():
    train = pa.array(["the coffee was great", "the tea was bad", "coffee and tea"] * 10)
    opts = {"encoder": {"name": "cnn"}, "tokenizer": {"name": "bpe", "vocab": 60}, "max_len": 6}
    st = text.fit(train, opts, "text")
    enc = text.encode(pa.array(["the coffee", ""]), st, "x")
    assert enc["tok_x"].shape == (2, 6) and enc["mask_x"][1].sum() == 0
    assert 0 < enc["tok_x"].max() <= st["vocab_size"]


def test_bag_items_with_weights_and_bad_items():
    flat, weight, row, bad = labels.bag_items(pa.array(["a:2 b", "c:x", None, "d:0.5"]), " ")
    assert flat.to_pylist() == ["a", "b", "d"] and weight.tolist() == [2.0, 1.0, 0.5]
    assert row.tolist() == [0, 0, 3] and bad.tolist() == [False, True, False, False]


def test_set_targets_and_decoding():
    st = labels.fit_output(pa.array(["a|b", "b", None, "c|a"]), {"separator": "|", "threshold": 0.5})
    assert st["labels"] == ["a", "b", "c"]
    y = labels.encode_target(pa.array(["a|c", "z"]), st)
    assert y.tolist() == [[1, 0, 1], [0, 0, 0]]  # z was never seen in training
    out = labels.decode(np.array([[0.9, 0.2, 0.6]]), st, "g")
    assert out["g"] == ["a|c"] and out["g_probabilities"][0]["b"] == 0.2


def test_dates_in_many_formats_and_their_calendar_features():
    col = pa.chunked_array([pa.array(["2021-03-04", "2021-03-04T10:20:30.5Z", "2021-03-04T12:20:30+02:00"])])
    fmt, share = dates.infer_format(col)
    secs = dates.parse(col, fmt)
    assert fmt == dates.ISO and share == 1.0 and secs[1] == secs[2] == secs[0] + 37230
    st = dates.fit(secs, fmt)
    x = dates.encode(secs, st)
    assert x.shape == (3, dates.width(st)) and st["time_of_day"]
    month = 1 + max(0, len(st["edges"]) - 1)  # after the trend and its piecewise-linear bins
    assert x[0, month + 2] == 1 and x[0, month + 12 + 3] == 1  # March; a Thursday
    assert x[0, month + 19 + 62 // 7] == 1  # March 4th is in the 9th week of the year
    assert dates.infer_format(pa.chunked_array([pa.array(["31/12/2020", "04/03/2021"])]))[0] == "%d/%m/%Y"
    assert dates.infer_format(pa.chunked_array([pa.array(["Jan 5, 2021"])]))[0] == "%b %d %Y"


def test_vectors_of_the_wrong_length_are_bad():
    values, bad = vectors.parse(pa.array(["1 2 3", "[4, 5, 6]", "1 2", "1 x 3", None]), " ")
    assert bad.tolist() == [False, True, True, True, False]  # "[4, 5, 6]" splits on spaces into "4," ...
    values, bad = vectors.parse(pa.array(["[1, 2]", "(3,4)", "5,6"]), ",")
    assert values.tolist() == [[1, 2], [3, 4], [5, 6]] and not bad.any()


# ---- expert blocks encoding one input ----------------------------------------------------
BLOCK = """block pooled(x, width: int = 16) {
  h = gelu(dense(x, width))
  return concat(pool_mean(h), pool_max(h))
}
"""


def test_a_block_encodes_a_text_input_and_explain_round_trips(tmp_path):
    from mlc.compile import frontend
    from mlc.explain import explain
    from mlc.ir.lower import lower
    from mlc.runtime import data as D
    from mlc.runtime import preprocess as P
    write_files(tmp_path, {"d.csv": TAGS, "p.dml": 'data "d.csv"\n' + BLOCK +
                           "input tags : text { encoder = pooled(width = 8) }\noutput label : binary\n"})
    fe = frontend(tmp_path / "p.dml")
    text_out = explain(fe.resolved)
    assert "encoder = pooled(width = 8)" in text_out
    (tmp_path / "again.dml").write_text(text_out)
    assert frontend(tmp_path / "again.dml").resolved.to_json() == fe.resolved.to_json()
    r = fe.resolved
    g = lower(r, P.fit(r, D.take(fe.table, fe.splits["train"]), fe.facts))
    opcodes = [op.opcode for op in g.ops]
    assert "masked_mean" in opcodes and "masked_max" in opcodes
    assert g.inputs["tok_tags"].shape[0] == "B" and g.inputs["mask_tags"] == g.inputs["mask_tags"]


def test_a_block_cannot_encode_a_number(tmp_path):
    r = _check(tmp_path, 'data "d.csv"\n' + BLOCK + "input x : number { encoder = pooled() }\n"
               "output label : binary\n", {"d.csv": _csv("x,label", [f"{i},{'yes' if i % 2 else 'no'}"
                                                                    for i in range(30)])})
    assert r.first == "prog.dml:6:30: error: an expert block cannot encode a `number` input"
    assert r.hint == "blocks encode `text`, `sequence`, `set`, `bag`, `category` inputs"


def test_pooling_tokens_in_a_combiner_block_is_an_error(tmp_path):
    r = _check(tmp_path, 'data "d.csv"\n' + BLOCK + "input tags : set\noutput label : binary\ncombiner pooled()\n",
               {"d.csv": TAGS})
    assert r.first == ("prog.dml:4:17: error: pool_mean pools the tokens of a text or sequence input; "
                       "this block gets none")


def test_a_few_broken_lines_are_left_out_with_a_warning(tmp_path):
    rows = [f"2021-03-{1 + i % 28:02d},{i % 7}.5,{'yes' if i % 3 else 'no'}" for i in range(300)]
    rows[2] = "2021-03-03,1.5,yes,extra"  # line 4: four fields
    rows[9] = "2021-03-02,oops,no"  # line 11 of the file, row 10 of the table after line 4 is left out
    r = _check(tmp_path, 'data "d.csv"\ninput when : date\ninput x : number\noutput label : binary\n',
               {"d.csv": _csv("when,x,label", rows)}, ok=True)
    assert ("prog.dml:1:6: warning: left out 1 line of `d.csv` with the wrong number of fields "
            "(the header has 3): line 4 (4 fields)") in r.stderr
    assert "`oops` (line 11)" in r.stderr
    assert "299 rows" in r.stdout
