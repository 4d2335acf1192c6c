"""The method paper shipped as the research paper of a release (release.research_paper = 'builtin'). Kept as a
Python string so it installs with the package."""

PAPER_NAME = "moxin-method.md"

PAPER = """# moxin: building fully open language models whose openness is a build output

*The method paper shipped with every moxin release as its research paper component. It describes how the
model in this release was built; the release's technical report gives this model's own figures.*

Licence: CC-BY-4.0.

## Abstract

Open-weight language models are common; open-science ones are rare, because what makes a model reproducible
(the data, the preprocessing code, the intermediate checkpoints, the exact training order) is usually described
rather than shipped. The Moxin technical report (arXiv 2412.06845) argues for releasing every component of the
Model Openness Framework (MOF) and rates its model Class I. moxin turns that argument into a build system: one
recipe describes data curation, tokenizer training, multi-phase pretraining, fine-tuning, evaluation and release;
each stage records what it read and wrote; and the release computes its MOF class from the files it actually
contains, audits every licence, and can re-run part of training to show the published weights follow from the
published inputs.

## Method

**Data with provenance.** Each source is declared with an SPDX licence. Documents pass through readers, filters,
deduplication, decontamination against the evaluation sets and PII scrubbing; every dropped document carries a
reason and is counted. Tokenized shards are addressed by source, split and offset, so any training token maps
back to its document. The SHA-256 of the shard index is the data fingerprint.

**Deterministic training.** The batch of every optimizer step is a pure function of the data fingerprint, the
seed, the phase and the step, so training can resume at any checkpoint and see exactly the data it would have
seen. Checkpoints are safetensors (weights and optimizer state) plus a JSON train state holding the step, the
phase, the data position, the random number generator states, the data fingerprint, the resolved configuration
and the lineage (the parent checkpoint and its hash). Training on a CPU is bitwise reproducible.

**Fine-tuning and evaluation.** Supervised fine-tuning, preference optimisation and low-rank adaptation share one
loop and write checkpoints in the same layout, with lineage to the pretrained checkpoint. Evaluation runs every
checkpoint through the same tasks, keyed by the checkpoint's hash and the task configuration's hash, and records
quality and bias results.

**Computed openness.** The release bundles the final and intermediate checkpoints, the tokenizer, the recipe,
the data manifest and tokenized data, the evaluation results and data, the training logs, sample outputs, the
source code with its version, licence texts, a model card, a data card and a technical report. Each of the
seventeen MOF components is detected from these files; each licence is audited for the component's kind (an
OSI licence for code, an open data licence for data and weights, an open content licence for documents);
non-commercial, restricted and unknown licences fail. The class achieved is the highest whose required components
are all present and not failing, with the reasons for every class that is not met.

**Verification.** `moxin verify` checks the checksums of every file, recomputes the MOF assessment and compares it
with the one shipped, checks that the checkpoints' data fingerprint matches the data manifest and that the lineage
hashes chain, and, with `--reproduce`, resumes training from an intermediate checkpoint with the recorded recipe,
data order and random state and compares the result with the published later checkpoint, bit for bit on a CPU.

## Limitations

A release made at toy scale demonstrates the method, not a useful model. Licence audits read the licences the
sources declare; they do not establish that a source's declaration is correct. Bitwise reproduction holds on the
same software and hardware kind; across GPUs it holds only to a stated tolerance.
"""
