"""GPT→GPT distillation (jaxcomp.distill.lm): loss terms against numpy, the engine run,
equal training to train_lm, no consumed arrays, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.data.text import TextData
from jaxcomp.distill.lm import distill_lm, lm_distill_loss, states_forward, with_hidden_states
from jaxcomp.models import get_model
from jaxcomp.models import gpt_blocks as gb
from jaxcomp.models.lm import train_lm

CTX = 16


def gpt(layers=2, width=32, heads=2):
    return get_model("gpt", input_shape=(CTX,), num_layers=layers, width=width,
                     num_heads=heads, context=CTX)


@pytest.fixture(scope="module")
def data():
    return TextData.from_bytes(b"a quick brown fox jumps over the lazy dog; " * 60, name="toy")


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_states_forward_matches_the_module():
    m = gpt()
    p, ms = m.init(jax.random.key(0), None)
    x = jax.random.randint(jax.random.key(1), (2, CTX), 0, 256)
    z, hidden = states_forward(gb.gpt_spec(m), p, x)
    ref, _ = m.apply(p, ms, x)
    np.testing.assert_allclose(z, ref, atol=1e-5)
    assert len(hidden) == 2 and hidden[-1].shape == (2, CTX, 32)
    # the last hidden state through the head gives the logits
    np.testing.assert_allclose(gb.logits(m, p, hidden[-1]), ref, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_loss_terms_match_numpy(jit):
    teacher, student = gpt(2, 32), gpt(1, 16)
    tp, _ = teacher.init(jax.random.key(0), None)
    sp, _ = student.init(jax.random.key(1), None)
    x = jax.random.randint(jax.random.key(2), (2, CTX), 0, 256)
    channels = np.arange(32)[::2][::-1].copy()      # 16 of the teacher's 32, reordered
    temp, wk, wc, wh = 2.0, 0.7, 0.2, 0.5
    loss = lm_distill_loss(student, teacher, temperature=temp, kd_weight=wk, ce_weight=wc,
                           hidden_weight=wh, layer_map={0: 1}, channels=channels)
    out, _ = with_hidden_states(student).apply(sp, None, x)
    batch = {"x": x, "y": jnp.roll(x, -1, 1), "loss_state": tp}
    fn = jax.jit(loss) if jit else loss
    total, aux = fn(out, batch)

    t_logits, t_hidden = states_forward(gb.gpt_spec(teacher), tp, x)
    zs, zt = np.asarray(out["logits"], np.float64), np.asarray(t_logits, np.float64)
    lp, lq = np_log_softmax(zt / temp), np_log_softmax(zs / temp)
    kd = temp ** 2 * np.mean(np.sum(np.exp(lp) * (lp - lq), -1))
    y = np.asarray(batch["y"])
    ce = -np.mean(np.take_along_axis(np_log_softmax(zs), y[..., None], -1))
    tgt = np.asarray(t_hidden[1])[..., channels]
    hid = np.mean((np.asarray(out["hidden"][0]) - tgt) ** 2) / (np.mean(tgt ** 2) + 1e-6)
    np.testing.assert_allclose(aux["kd"], kd, rtol=1e-4)
    np.testing.assert_allclose(aux["ce"], ce, rtol=1e-5)
    np.testing.assert_allclose(aux["hidden"], hid, rtol=1e-4)
    np.testing.assert_allclose(total, wk * kd + wc * ce + wh * hid, rtol=1e-4)


def test_teacher_gets_no_gradient_and_student_does():
    teacher = student = gpt(1, 16)
    tp, _ = teacher.init(jax.random.key(0), None)
    sp, _ = student.init(jax.random.key(1), None)
    x = jax.random.randint(jax.random.key(2), (2, CTX), 0, 256)
    loss = lm_distill_loss(student, teacher, hidden_weight=1.0)
    hm = with_hidden_states(student)

    def f(s, t):
        out, _ = hm.apply(s, None, x)
        return loss(out, {"x": x, "y": x, "loss_state": t})[0]

    gs, gt = jax.grad(f, argnums=(0, 1))(gb.pure(sp), gb.pure(tp))
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(gt))
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(gs)) > 0.0


def test_distillation_trains_the_student_and_consumes_nothing(data):
    teacher, student = gpt(2, 32), gpt(1, 32)
    tp, _ = teacher.init(jax.random.key(0), None)
    tp, _ = train_lm(teacher, data, optax.adam(3e-3), steps=40, batch_size=8, context=CTX)
    tp = tp.params
    sp, _ = student.init(jax.random.key(5), None)
    before_t = jax.tree.map(np.asarray, gb.pure(tp))
    before_s = jax.tree.map(np.asarray, gb.pure(sp))
    state, hist = distill_lm(student, teacher, tp, data, optax.adam(3e-3), steps=30,
                             batch_size=8, context=CTX, student_params=sp, eval_every=10,
                             hidden_weight=0.5, layer_map={0: 1})
    assert [h["step"] for h in hist] == [10, 20, 30]
    assert hist[-1]["train_kd"] < hist[0]["train_kd"]
    for before, after in ((before_t, tp), (before_s, sp)):   # still alive and unchanged
        jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray,
                                                                         gb.pure(after)))


def test_cross_entropy_only_is_the_same_training_as_train_lm(data):
    teacher, student = gpt(1, 16), gpt(1, 32)
    tp, _ = teacher.init(jax.random.key(0), None)
    kw = dict(steps=6, batch_size=4, context=CTX, seed=3)
    a, ha = distill_lm(student, teacher, tp, data, optax.adam(1e-3), kd_weight=0.0,
                       ce_weight=1.0, **kw)
    b, hb = train_lm(student, data, optax.adam(1e-3), **kw)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=2e-5),
                 gb.pure(a.params), gb.pure(b.params))
    np.testing.assert_allclose(ha[-1]["train_bpb"], hb[-1]["train_bpb"], rtol=1e-5)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(temperature=0.0), "temperature"),
    (dict(kd_weight=-1.0), "kd_weight"),
    (dict(kd_weight=0.0), "all 0"),
    (dict(hidden_weight=1.0, layer_map={0: 2}), "teacher block 2"),
    (dict(hidden_weight=1.0, layer_map={3: 0}), "student block 3"),
    (dict(hidden_weight=1.0, layer_map={}), "empty"),
    (dict(hidden_weight=1.0), "layer_map: None"),
    (dict(hidden_weight=1.0, layer_map={0: 0}), "channels: None"),
    (dict(hidden_weight=1.0, layer_map={0: 0}, channels=list(range(17))), "16 distinct"),
    (dict(hidden_weight=1.0, layer_map={0: 0}, channels=[40] * 16), "16 distinct"),
])
def test_bad_input_is_a_clear_error(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        lm_distill_loss(gpt(1, 16), gpt(2, 32), **kwargs)


def test_missing_loss_state_and_other_vocabulary(data):
    m = gpt(1, 16)
    p, _ = m.init(jax.random.key(0), None)
    x = jnp.zeros((1, CTX), jnp.int32)
    out, _ = with_hidden_states(m).apply(p, None, x)
    with pytest.raises(ConfigError, match="loss_state"):
        lm_distill_loss(m, m)(out, {"x": x, "y": x})
    other = get_model("gpt", input_shape=(CTX,), num_layers=1, width=16, num_heads=2,
                      vocab_size=128)
    with pytest.raises(ConfigError, match="vocabulary"):
        distill_lm(other, m, p, data, optax.adam(1e-3), steps=1, batch_size=2, context=CTX)


def test_an_nnx_gpt_module_can_be_the_teacher_and_the_student(data):
    from flax import nnx

    from jaxcomp.models.gpt import GPT

    teacher = GPT(num_layers=1, width=32, num_heads=2, context=CTX, rngs=nnx.Rngs(0))
    student = GPT(num_layers=1, width=16, num_heads=2, context=CTX, rngs=nnx.Rngs(1))
    state, hist = distill_lm(student, teacher, None, data, optax.adam(1e-3), steps=2,
                             batch_size=2, context=CTX)
    assert len(hist) == 1 and np.isfinite(hist[0]["train_kd"])
    ref = nnx.state(student, nnx.Param)   # the module's params seeded the run, unconsumed
    assert np.isfinite(np.asarray(ref["embed"]["embedding"][...])).all()


@pytest.mark.parametrize("case, needle", [
    ("teacher params of another model", "distill_lm.teacher: params do not fit"),
    ("student params of another model", "distill_lm.student: params do not fit"),
    ("no teacher params", "distill_lm.teacher: params is None"),
    ("context beyond the models'", "distill_lm.context: got 32"),
    ("a linen teacher", "distill_lm.teacher"),
])
def test_distill_lm_checks_models_params_and_context(data, case, needle):
    teacher, student = gpt(2, 32), gpt(1, 16)
    tp, _ = teacher.init(jax.random.key(0), None)
    sp, _ = student.init(jax.random.key(1), None)
    kw = dict(steps=1, batch_size=2, context=CTX)
    args = {"teacher params of another model": (student, teacher, sp, None),
            "student params of another model": (student, teacher, tp, tp),
            "no teacher params": (student, teacher, None, None),
            "context beyond the models'": (student, teacher, tp, None),
            "a linen teacher": (student, get_model("mlp", input_shape=(CTX,)), tp, None)}[case]
    if case == "context beyond the models'":
        kw["context"] = 32
    with pytest.raises(ConfigError, match=needle):
        distill_lm(args[0], args[1], args[2], data, optax.adam(1e-3), student_params=args[3],
                   **kw)


def test_zero_steps_return_the_state_unchanged(data):
    m = gpt(1, 16)
    state, hist = train_lm(m, data, optax.adam(1e-3), steps=0, batch_size=2, context=CTX)
    assert hist == [] and int(state.step) == 0
