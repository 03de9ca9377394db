"""Concurrent users (--users): every user's KV is resident, tokens pipeline through the regions, throughput stops
growing where the busiest region is always busy, and SRAM caps the users a placement holds."""

import pytest

from runtime.wafer.errors import WaferError
from runtime.wafer.hardware import load_hardware
from runtime.wafer.sim import SimOptions, simulate
from runtime.wafer.workload import load_arch, workload_for_arch

WSE3 = load_hardware("wse3")
W = workload_for_arch(load_arch("llama3-8b"))


def run(users, **kw):
    return simulate(W, WSE3, SimOptions(context=4096, users=users, **kw))


def test_one_user_is_the_plain_report():
    a, b = simulate(W, WSE3, SimOptions(context=4096)), run(1)
    assert a.decode_tokens_per_s == b.decode_tokens_per_s and b.users is None


def test_throughput_grows_until_the_pipeline_is_full_then_users_share_it():
    few, many = run(4, wafers=2), run(200, wafers=4)
    assert few.kv_bytes == 4 * run(1, wafers=2).kv_bytes
    u = few.users
    assert u.per_user_tokens_per_s == pytest.approx(u.single_user_tokens_per_s)  # 4 users fit the pipeline
    assert u.throughput_tokens_per_s == pytest.approx(4 * u.per_user_tokens_per_s)
    assert 20 < u.pipeline_users < 200 and u.kv_users_max >= 4
    m = many.users
    assert m.per_user_tokens_per_s < m.single_user_tokens_per_s / 3  # past the knee each user slows
    # throughput saturates at 1 / t_busiest: pipeline_users users' worth of single-user speed
    assert m.throughput_tokens_per_s == pytest.approx(m.pipeline_users * m.single_user_tokens_per_s, rel=0.05)
    assert many.decode_tokens_per_s == pytest.approx(m.per_user_tokens_per_s)


def test_users_are_bounded_by_sram_and_refused_with_speculation():
    with pytest.raises(WaferError, match="SRAM") as refused:
        run(400, wafers=1)  # 400 KV caches of 4K tokens do not fit one wafer beside the weights
    need = float(str(refused.value).split("needs ")[1].split(" GB")[0])
    assert need == pytest.approx((W.weight_bytes("bf16") + 400 * W.kv_bytes(4096)) / 1e9, abs=0.1)  # every user's KV
    with pytest.raises(WaferError, match="--users"):
        run(0)
    with pytest.raises(WaferError, match="--users"):
        simulate(W, WSE3, SimOptions(context=4096, users=2, acceptance=0.5), draft=workload_for_arch(load_arch("llama3.2-1b")))
