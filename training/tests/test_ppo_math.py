"""PPO arithmetic against hand-computed values."""

import math

import pytest
import torch

from training import ppo_math as ppo

EOS = 3


def test_whitening_uses_only_real_tokens():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    whitened = ppo.masked_whiten(values, mask)
    assert ppo.masked_mean(whitened, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert ppo.masked_var(whitened, mask).item() == pytest.approx(1.0, rel=1e-4)
    assert ppo.masked_whiten(values, mask, shift_mean=False)[0, 1].item() == pytest.approx(2.0)


def test_responses_end_at_their_first_eos():
    tokens = torch.tensor([[5, 7, EOS, 9, 9], [5, 6, 7, 8, 9]])
    assert ppo.response_mask(tokens, EOS).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert ppo.ends_with_eos(tokens, EOS).tolist() == [True, False]


def test_logprobs_are_taken_at_the_sampling_temperature():
    logits = torch.tensor([[[2.0, 0.0]]])
    token = torch.tensor([[0]])
    at_one = ppo.logprobs_of(logits, token, 1.0).item()
    at_two = ppo.logprobs_of(logits, token, 2.0).item()
    assert at_one == pytest.approx(math.log(math.exp(2) / (math.exp(2) + 1)))
    assert at_two == pytest.approx(math.log(math.exp(1) / (math.exp(1) + 1)))


def test_the_piecewise_reward_prefers_safety_when_it_matters():
    helpful = torch.tensor([0.9, 0.9, 0.9])
    safe = torch.tensor([0.5, 0.1, 0.5])
    tagged = torch.tensor([False, False, True])
    assert ppo.choose_score(helpful, safe, tagged).tolist() == pytest.approx([0.9, 0.1, 0.5])


def test_the_score_lands_on_the_last_real_token_and_kl_everywhere():
    score = torch.tensor([2.0, 1.0])
    logprobs = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    reference = torch.tensor([[-1.5, -1.0, -2.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    rewards, kl = ppo.token_rewards(score, logprobs, reference, mask, beta=0.1, missing_eos=torch.tensor([False, True]))
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    # The second row produced no EOS: its score is cut by the penalty (1.0) to 0.
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 2.0, 0.0], [0.0, 0.0, 0.0]]))


def test_gae_returns_are_rewards_to_go_with_gamma_and_lambda_one():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.2, 0.4, 0.6, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    advantages, returns = ppo.generalized_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(returns, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert advantages[0, 3].item() == 0.0
    assert ppo.masked_mean(advantages, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_the_surrogate_clips_and_reports_it():
    old = torch.zeros(1, 2)
    new = torch.tensor([[math.log(1.5), math.log(1.1)]])
    advantages = torch.ones(1, 2)
    loss, stats = ppo.policy_loss(new, old, advantages, torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(-(1.2 + 1.1) / 2)
    assert stats["ppo/clipfrac"].item() == pytest.approx(0.5)


def test_explained_variance_is_one_for_a_perfect_value_head():
    returns = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    assert ppo.explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert ppo.explained_variance(torch.zeros(1, 3), returns, mask).item() < 0.01
