"""Rollout engines: the transformers engine reproduces `rollout.generate`, generation calls are seeded alone, and the
vLLM engine asks vLLM for what its documentation says (checked against a stand-in `vllm` module: vLLM is not
installed here and this engine has not run on a GPU)."""

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from sampler.engines import policy_generation
from sampler.engines.policy_generation import EXTENSION, LOAD_METHOD, VllmPolicyEngine, buckets
from training import ppo_cli
from training.cli import config_from_arguments
from training.distributed import Runtime, contiguous_share, micro_batch_count, micro_batches
from training.policy import load_policy
from training.ppo import PPOConfig, train_ppo
from training.rollout import encode_prompts, generate
from training.rollout_engine import (
    GenerationCall,
    Sampling,
    TransformersRolloutEngine,
    VllmRolloutEngine,
    call_seed,
    distributed_rollout,
    full_parameters,
    make_engine,
    request_seed,
)
from training.tests.policy_setup import build_policy

CPU = torch.device("cpu")
ONE = Runtime(0, 1, CPU)
SAMPLING = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=6)


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    return build_policy(tmp_path_factory.mktemp("engines") / "policy")


@pytest.fixture(scope="module")
def policy(policy_dir):
    return load_policy(policy_dir, device=CPU, dtype=torch.float32)


def prompts(policy, count: int) -> list[list[int]]:
    return encode_prompts(policy, [[{"role": "user", "content": f"Question {i}" + "?" * i}] for i in range(count)])


def test_one_generation_call_draws_what_generate_draws(policy):
    encoded = prompts(policy, 6)
    expected = generate(policy, encoded, temperature=1.0, top_p=1.0, max_new_tokens=6, seed=11)
    engine = TransformersRolloutEngine(policy)
    rollout = distributed_rollout(engine, policy, encoded, SAMPLING, seed=11, call_size=None, runtime=ONE)
    for name in ("query", "query_mask", "response", "mask", "ended"):
        assert torch.equal(getattr(rollout, name), getattr(expected, name)), name
    assert rollout.texts == expected.texts


def test_each_generation_call_is_seeded_alone(policy):
    """What makes any number of processes draw the same rollout: a call's draw depends on its prompts and seed only."""
    encoded = prompts(policy, 6)
    engine = TransformersRolloutEngine(policy)
    whole = distributed_rollout(engine, policy, encoded, SAMPLING, seed=3, call_size=2, runtime=ONE)
    third = generate(policy, encoded[4:], temperature=1.0, top_p=1.0, max_new_tokens=6, seed=call_seed(3, 2))
    assert whole.texts[4:] == third.texts
    assert call_seed(3, 0) == 3 and len({call_seed(3, i) for i in range(50)}) == 50


def test_the_pieces_of_a_step_are_dealt_out_evenly_and_short_shares_are_filled():
    assert [list(contiguous_share(7, Runtime(rank, 3, CPU))) for rank in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    count = micro_batch_count(5, 2, Runtime(1, 2, CPU))
    assert count == 2
    assert micro_batches([4, 9, 2], 2, count, filler=7) == [([4, 9], 1.0), ([2], 1.0)]
    assert micro_batches([8], 2, count, filler=7) == [([8], 1.0), ([7], 0.0)], "a filler of weight 0 keeps step"
    assert micro_batches([], 2, 1, filler=7) == [([7], 0.0)]


def test_an_unknown_engine_is_refused(policy, policy_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown rollout engine 'tgi'"):
        make_engine("tgi", policy, ONE, checkpoint="", sharded=False, dtype=torch.float32, gpu_memory_utilization=0)
    config = PPOConfig(policy_dir, tmp_path / "r", None, tmp_path / "p.jsonl", tmp_path / "o", rollout_engine="tgi")
    with pytest.raises(ValueError, match="rollout_engine must be one of transformers, vllm"):
        train_ppo(config)
    arguments = ["--policy", "p", "--reward-helpfulness", "h", "--prompts", "x", "--output", "o"]
    parsed = config_from_arguments(PPOConfig, ppo_cli.parser().parse_args([*arguments, "--rollout-engine", "vllm"]))
    assert parsed.rollout_engine == "vllm" and parsed.generation_batch_size is None and not parsed.fsdp


def test_without_vllm_the_engine_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(RuntimeError, match="needs the vllm package"):
        VllmPolicyEngine("/nowhere", rank=0, eos_token_id=3)


class FakeOutput:
    def __init__(self, token_ids: list[int], finish_reason: str) -> None:
        self.outputs = [types.SimpleNamespace(token_ids=tuple(token_ids), finish_reason=finish_reason)]


class FakeLLM:
    """Records what is asked of `vllm.LLM`; its worker is the extension class named by `worker_extension_cls`."""

    def __init__(self, **options: Any) -> None:
        self.options, self.calls, self.loaded = options, list[tuple[Any, ...]](), list[tuple[str, torch.Tensor]]()
        module, name = options["worker_extension_cls"].rsplit(".", 1)
        self.worker = getattr(importlib.import_module(module), name)()
        model = types.SimpleNamespace(load_weights=lambda weights: self.loaded.extend(weights))
        self.worker.model_runner = types.SimpleNamespace(model=model)
        self.replies = [([5, 6, 3], "stop"), ([7], "stop"), ([8, 9, 10, 11, 12, 13], "length")]

    def generate(self, prompts, sampling_params, use_tqdm):
        self.calls.append(("generate", prompts, sampling_params, use_tqdm))
        return [FakeOutput(*self.replies[i % 3]) for i in range(len(prompts))]

    def collective_rpc(self, method, args=()):
        self.calls.append(("collective_rpc", method, len(args[0])))
        return [getattr(self.worker, method)(*args)]

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tuple(tags or ())))

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kwargs: kwargs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what the engine fills in for vLLM's launcher goes away
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT"):
        os.environ.pop(name, None)
    return module


def test_the_vllm_engine_runs_in_this_process_with_weight_loading_and_sleep_mode(fake_vllm, policy, policy_dir):
    engine = make_engine(
        "vllm", policy, Runtime(0, 1, CPU), checkpoint=str(policy_dir), sharded=False, dtype=torch.bfloat16,
        gpu_memory_utilization=0.25,
    )  # fmt: skip
    assert isinstance(engine, VllmRolloutEngine)
    llm = engine.engine.llm
    assert llm.options == {
        "model": str(policy_dir),
        "tensor_parallel_size": 1,
        "distributed_executor_backend": "external_launcher",  # in this process, one engine per torchrun rank
        "enable_sleep_mode": True,
        "worker_extension_cls": "sampler.engines.policy_generation.WeightSyncExtension",
        "generation_config": "vllm",  # sampling is what each request says, not the checkpoint's defaults
        "dtype": "bfloat16",
        "gpu_memory_utilization": 0.25,
        "seed": 0,
    }
    assert EXTENSION.endswith("WeightSyncExtension") and os.environ["WORLD_SIZE"] == "1"
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_the_vllm_engine_batches_a_step_and_loads_new_weights_after_an_update(fake_vllm, policy_dir):
    policy = load_policy(policy_dir, device=CPU, dtype=torch.float32)  # its own copy: this test updates it
    engine = make_engine(
        "vllm", policy, ONE, checkpoint=str(policy_dir), sharded=False, dtype=torch.float32, gpu_memory_utilization=0.3
    )
    assert isinstance(engine, VllmRolloutEngine)
    llm = engine.engine.llm
    encoded = prompts(policy, 5)
    calls = [GenerationCall(encoded[:3], seed=21), GenerationCall(encoded[3:], seed=22)]
    responses = engine.sample(calls, SAMPLING)
    (kind, requests, params, use_tqdm), *after = llm.calls
    assert kind == "generate" and not use_tqdm, "all prompts of the step in one batch"
    assert after == [("sleep", 2)], "the engine frees its weights and KV cache for training"
    assert requests == [{"prompt_token_ids": prompt} for prompt in encoded]
    assert [p["seed"] for p in params] == [request_seed(21, 0), request_seed(21, 1), request_seed(21, 2),
                                           request_seed(22, 0), request_seed(22, 1)]  # fmt: skip
    assert params[0] == {"n": 1, "temperature": 1.0, "top_p": 1.0, "max_tokens": 6, "seed": request_seed(21, 0),
                         "stop_token_ids": [policy.eos_token_id], "detokenize": False}  # fmt: skip
    eos, pad = policy.eos_token_id, policy.pad_token_id
    assert responses[0].tolist() == [[5, 6, 3, pad, pad, pad], [7, eos, pad, pad, pad, pad], [8, 9, 10, 11, 12, 13]]
    assert responses[1].tolist() == [[5, 6, 3], [7, eos, pad]], "a stop without its EOS gets it back"

    llm.calls.clear()
    with torch.no_grad():
        policy.model.lm_head.weight.add_(1.0)  # an update
    engine.sync_weights(policy.model)
    engine.sample(calls[:1], SAMPLING)
    names = [call[0] for call in llm.calls]
    assert llm.calls[0] == ("wake_up", ("weights",)), "the weights' memory first, then the KV cache"
    assert set(names[1:-4]) == {"collective_rpc"} and all(call[1] == LOAD_METHOD for call in llm.calls[1:-4])
    assert llm.calls[-4:-2] == [("reset_prefix_cache",), ("wake_up", ("kv_cache",))]
    assert names[-2:] == ["generate", "sleep"] and llm.calls[-1] == ("sleep", 2), "asleep while training"
    loaded = dict(llm.loaded)
    assert loaded.keys() == dict(policy.model.named_parameters()).keys()
    torch.testing.assert_close(loaded["lm_head.weight"], policy.model.lm_head.weight)

    llm.calls.clear()
    engine.sample(calls[:1], SAMPLING)  # level-2 sleep freed the weights: they are loaded again
    assert ("wake_up", ("weights",)) in llm.calls and llm.calls[-1] == ("sleep", 2)
    llm.calls.clear()
    assert engine.sample([], SAMPLING) == [], "a process without calls still takes part in loading the weights"
    assert "generate" not in [call[0] for call in llm.calls] and ("wake_up", ("weights",)) in llm.calls
    engine.close()
    assert engine.engine.llm is None and llm.calls[-1] == ("sleep", 2), "closed asleep: its GPU memory freed"


def test_weights_travel_in_buckets_of_bounded_size():
    tensors = [(f"w{i}", torch.zeros(256)) for i in range(5)]  # 1 KiB each
    assert [[name for name, _ in bucket] for bucket in buckets(tensors, 2048)] == [["w0", "w1"], ["w2", "w3"], ["w4"]]
    assert len(list(buckets([("big", torch.zeros(4096))], 2048))) == 1, "a tensor larger than the bound goes alone"
    model = torch.nn.Linear(2, 3)
    assert [name for name, _ in full_parameters(model)] == ["weight", "bias"]
    assert policy_generation.response_tokens(FakeOutput([1, 2], "length"), 3) == [1, 2]
