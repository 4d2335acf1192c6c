"""The data stage: raw sources → cleaned, deduplicated, PII-masked, decontaminated documents → tokenizer →
token shards, with every decision counted under a named reason ("raw material traceability").

For the build (one call; it trains or reuses the tokenizer in between)::

    from moxin.data.pipeline import run_data_stage
    manifest = run_data_stage(recipe.data.resolved(recipe.resolve_path), recipe.tokenizer, recipe.run.seed, run_dir)

which runs, in order: `process.Processor.run` (sources → `<run>/data/processed/`), `pipeline.tokenizer_sample`
(a seeded sample of the processed *train* text) → `pipeline.ensure_tokenizer` (→ `tokenizer.train_tokenizer`, or
`tokenizer.train.reuse_tokenizer` when `tokenizer.path` is set; skipped when `<run>/tokenizer/` already holds one
made from the same sample and config) → `shard.tokenize_processed` (→ `tokens.json`, `tokens/`) → manifest and
data card. It returns the existing manifest without work when the inputs' fingerprint (configs, seed, the SHA-256
of every input file) is unchanged. `pipeline.train_tokenizer_stage` trains the tokenizer alone (`moxin tokenizer`).

Steps (`process.STEPS`, in order): read, normalize, langid, quality, dedup_exact, dedup_fuzzy, pii, decontaminate.
Per source and step the manifest has docs/bytes in and out, drops and changes by reason; per source the keep rate,
languages, read errors (file:line), input fingerprint, train/val documents and tokens. `samples/<step>.<reason>.jsonl`
holds examples of each reason.

`<run>/data/` (beyond the shard contract of `moxin.data.tokens`): `processed/<source>.jsonl` (kept documents, JSON
{id, lang, where (file:line of the raw record), text}), `processed/<source>.offsets.npy` (int64 (n, 2): byte
offset and length of each line), `processed/<source>.split.npy` (uint8: 0 train, 1 val; row i of
`tokens/<source>/<split>-docs.npy` is the i-th processed document of that split), `samples/`, `manifest.json`,
`data_card.md`.

Token addressing for `moxin data trace --token N`: N counts over the train split of every source in sorted
source-name order (the order of tokens.json); with `--source S [--split val]` it is the offset within S.

Mixture for a training phase: `mixture.resolve_mixture(weights, available, budget, max_epochs)` or, from a data
folder, `mixture.mixture_for(data_dir, budget_tokens)`.

Beyond one machine: `scale.AnalyzeShard` under datatrove's executors, then `scale.merge_analyzed` (same output).
"""
