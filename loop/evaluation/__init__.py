"""Evaluation that does not depend on the reward models a policy was trained against (Llama 2 sections 3.4 and 4):
agreement and interval statistics for human evaluation and safety ratings, and a model judge."""
