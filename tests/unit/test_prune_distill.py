"""Structured pruning and distillation of a BERT sentence encoder, on a tiny random BERT (no
MiniLM, no catalogue): shapes, identities, importance order, and that a fit gets closer to the
teacher, deterministically."""
import numpy as np
import pytest
import torch

from build_scripts import distill, prune
from build_scripts.compress import variant_name
from build_scripts.search_model import MeanPooledEncoder

VOCAB, HIDDEN, HEADS, FFN, LAYERS = 50, 16, 4, 32, 3


def tiny_encoder(seed: int = 0) -> MeanPooledEncoder:
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_attention_heads=HEADS,
                     intermediate_size=FFN, num_hidden_layers=LAYERS, max_position_embeddings=32,
                     attn_implementation="eager")
    return MeanPooledEncoder(BertModel(cfg, add_pooling_layer=False).eval()).eval()


def batch(seed: int = 1, n: int = 6, t: int = 9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, t + 1, size=n)
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": np.where(mask > 0, rng.integers(1, VOCAB, size=(n, t)), 0).astype(np.int64),
            "attention_mask": mask}


def embed(model, b) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(b["input_ids"]), torch.from_numpy(b["attention_mask"])).numpy()


# texts for fit(): a word per token id, tokenised by lookup
WORDS = [f"w{i}" for i in range(VOCAB)]


def tokenise(texts):
    rows = [[WORDS.index(w) for w in t.split()] for t in texts]
    t = max(map(len, rows))
    ids = np.zeros((len(rows), t), np.int64)
    mask = np.zeros((len(rows), t), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    return {"input_ids": ids, "attention_mask": mask}


def texts(n: int, seed: int = 2) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[j] for j in rng.integers(1, VOCAB, size=rng.integers(2, 8)))
            for _ in range(n)]


def test_pruning_nothing_is_the_same_model_and_pruning_shrinks_every_matmul():
    teacher = tiny_encoder()
    scores = prune.importance(teacher, [batch()])
    assert scores.heads.shape == (LAYERS, HEADS) and scores.ffn.shape == (LAYERS, FFN)
    assert (scores.heads > 0).all() and (scores.ffn >= 0).all()
    same = prune.prune(teacher, scores, prune.PruneConfig(heads=HEADS, ffn=FFN))
    np.testing.assert_allclose(embed(same, batch(3)), embed(teacher, batch(3)), atol=1e-6)

    small = prune.prune(teacher, scores, prune.PruneConfig(heads=2, ffn=8))
    d = HIDDEN // HEADS
    for layer in small.bert.encoder.layer:
        sa = layer.attention.self
        assert sa.query.weight.shape == sa.key.weight.shape == sa.value.weight.shape == (2 * d, HIDDEN)
        assert layer.attention.output.dense.weight.shape == (HIDDEN, 2 * d)
        assert layer.intermediate.dense.weight.shape == (8, HIDDEN)
        assert layer.output.dense.weight.shape == (HIDDEN, 8)
    assert prune.parameters(small) < prune.parameters(teacher)
    out = embed(small, batch(3))
    assert out.shape == (6, HIDDEN) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    # the original is untouched
    assert teacher.bert.encoder.layer[0].intermediate.dense.out_features == FFN


def test_pruning_keeps_the_most_important_units_and_they_are_the_ones_that_matter():
    assert prune.keep_top(np.array([0.1, 0.9, 0.5, 0.9]), 2).tolist() == [1, 3]
    with pytest.raises(prune.PruneError, match="cannot keep 5 of 4"):
        prune.keep_top(np.zeros(4), 5)
    teacher = tiny_encoder()
    # silence head 2 and FFN unit 5 of every layer: their scores drop to zero, and removing
    # exactly them changes nothing, while removing the strongest head instead does
    d = HIDDEN // HEADS
    with torch.no_grad():
        for layer in teacher.bert.encoder.layer:
            layer.attention.output.dense.weight[:, 2 * d:3 * d] = 0
            layer.output.dense.weight[:, 5] = 0
    scores = prune.importance(teacher, [batch()])
    assert (scores.heads[:, 2] == 0).all() and (np.argmin(scores.heads, axis=1) == 2).all()
    assert (scores.ffn[:, 5] == 0).all() and (scores.ffn[:, :5] > 0).all()
    smaller = prune.PruneConfig(heads=HEADS - 1, ffn=FFN - 1)
    without_silent = prune.prune(teacher, scores, smaller)
    np.testing.assert_allclose(embed(without_silent, batch(3)), embed(teacher, batch(3)), atol=1e-6)
    flipped = prune.Importance(-scores.heads, scores.ffn)
    flipped.heads[:, 2] = 10.0  # keep the silent head, drop the strongest one instead
    worse = prune.prune(teacher, flipped, smaller)
    assert np.abs(embed(worse, batch(3)) - embed(teacher, batch(3))).max() > 1e-3


def test_a_layer_subset_student_starts_from_the_teachers_layers():
    teacher = tiny_encoder()
    whole = distill.select_layers(teacher, [0, 1, 2])
    np.testing.assert_allclose(embed(whole, batch()), embed(teacher, batch()), atol=1e-6)
    student = distill.select_layers(teacher, [0, 2])
    assert len(student.bert.encoder.layer) == 2 and student.bert.config.num_hidden_layers == 2
    assert torch.equal(student.bert.encoder.layer[1].output.dense.weight,
                       teacher.bert.encoder.layer[2].output.dense.weight)
    assert len(teacher.bert.encoder.layer) == LAYERS
    for bad in ([], [0, 0], [3]):
        with pytest.raises(distill.DistillError):
            distill.select_layers(teacher, bad)


def test_distillation_moves_the_student_towards_the_teacher_deterministically():
    # a random tiny BERT is close to its own embedding layer, so its one-layer student would
    # agree with it from the start: the targets come from an unrelated teacher instead
    teacher, other = tiny_encoder(), tiny_encoder(seed=5)
    corpus = texts(96)
    targets = embed(other, tokenise(corpus))
    cfg = distill.DistillConfig(epochs=3, batch=16, lr=3e-3, seed=7)

    def trained():
        student = distill.select_layers(teacher, [0])
        return student, distill.fit(student, corpus, targets, tokenise, cfg)

    s1, report = trained()
    s2, again = trained()
    before = distill.agreement(distill.select_layers(teacher, [0]), corpus, targets, tokenise)
    after = distill.agreement(s1, corpus, targets, tokenise)
    assert report.steps == 3 * 6 and len(report.loss_per_epoch) == 3
    assert report.loss_per_epoch[-1] < report.loss_per_epoch[0]
    assert after > before + 0.1, (before, after)
    assert report == again
    np.testing.assert_array_equal(embed(s1, batch()), embed(s2, batch()))
    assert not any(p.requires_grad for p in s1.parameters())
    with pytest.raises(distill.DistillError):
        distill.fit(s1, corpus[:3], targets, tokenise, cfg)


def test_variant_names_key_the_budgets():
    assert variant_name("int8") == "int8"
    assert variant_name("fp32", "distilled") == "distilled"
    assert variant_name("int8", "pruned") == "pruned+int8"


def test_search_students_learn_from_catalogue_texts_and_tuning_queries_only():
    from build_scripts import movielens
    from build_scripts.search_compress import training_texts
    from build_scripts.search_model import catalogue_text
    from build_scripts.search_queries import query_sets
    catalogue = movielens.load_catalogue()
    cat = catalogue_text(catalogue)
    sets = query_sets(catalogue, cat.years)
    texts = training_texts(cat.texts, sets)
    tuning = {t for q in sets.values() for t, tune in zip(q.texts, q.tuning) if tune}
    evaluation = {t for q in sets.values() for t, tune in zip(q.texts, q.tuning) if not tune}
    assert set(texts) == set(cat.texts) | tuning and len(texts) == len(set(texts))
    assert not (set(texts) & (evaluation - tuning - set(cat.texts)))
    assert len(evaluation - tuning - set(cat.texts)) > 400  # the held-out queries exist
