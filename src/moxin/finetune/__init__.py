"""Fine-tuning with lineage: SFT, DPO, GRPO and LoRA, all on the shared training loop (`moxin.train.trainer`).

- `config`: the `[finetune]` recipe section (parent, shared settings, one table per mode).
- `data`, `prepare`: formats → normalised examples, drop reasons with file:line, dedup, decontamination, split,
  the data manifest.
- `template`: chat template (Jinja, stored with the tokenizer), assistant-only masks, packing with segment ids.
- `losses`: DPO, GRPO (group advantages, k3 KL, clipped surrogate) as pure tensor functions.
- `tasks`, `grpo`: the Trainer tasks and batch sources (SFT, DPO with cached reference log-probs, GRPO rollouts).
- `lora`: adapters with exact merge.
- `lineage`: parents and the chain back to the raw data; `run`: one fine-tuning run; `commands`: the CLI.
"""
