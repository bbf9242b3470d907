"""ChatML, the chat format of SmolLM2 and of the tiny test checkpoints: ``<|im_start|>role\\ncontent<|im_end|>\\n``."""

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
"""Ends every turn, so it is the EOS of a ChatML model."""

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""Jinja chat template for ``tokenizer.chat_template``; no default system prompt."""
