"""The one table of the report's labels: key → (English, Japanese). `--lang ja` selects the second column."""

from __future__ import annotations

LANGS = ("en", "ja")

LABELS: dict[str, tuple[str, str]] = {
    "title": ("Model report", "モデルレポート"),
    "compare_title": ("Comparison", "比較"),
    "run": ("run folder", "実行フォルダ"),
    "release": ("release", "リリース"),
    "contents": ("Contents", "目次"),
    "openness": ("Openness", "オープン性"),
    "mof_class": ("MOF class", "MOF クラス"),
    "mof_none": (
        "No MOF audit yet: run `moxin release` to compute it.",
        "MOF 監査はまだありません。`moxin release` で計算します。",
    ),
    "component": ("Component", "コンポーネント"),
    "class": ("Class", "クラス"),
    "files": ("Files", "ファイル数"),
    "licence": ("Licence", "ライセンス"),
    "verdict": ("Verdict", "判定"),
    "reason": ("Reason", "理由"),
    "licence_audit": ("Licence audit", "ライセンス監査"),
    "source": ("Source", "ソース"),
    "kind": ("Kind", "種類"),
    "failing": ("Failing sources", "不合格のソース"),
    "no_failing": ("No source fails the licence audit.", "ライセンス監査で不合格のソースはありません。"),
    "data": ("Data", "データ"),
    "docs_in": ("Documents in", "入力文書数"),
    "docs_kept": ("Documents kept", "採用文書数"),
    "tokens": ("Tokens", "トークン数"),
    "drop_reasons": ("Documents dropped, by reason", "除外された文書(理由別)"),
    "no_drops": ("No document was dropped.", "除外された文書はありません。"),
    "languages": ("Language mix", "言語構成"),
    "language": ("Language", "言語"),
    "documents": ("Documents", "文書数"),
    "decontam": ("Decontamination hits", "汚染除去のヒット数"),
    "pii": ("PII masked", "マスクした個人情報"),
    "data_card": ("Data card", "データカード"),
    "training": ("Training", "学習"),
    "stage": ("Stage", "段階"),
    "steps": ("Steps", "ステップ数"),
    "tokens_seen": ("Tokens seen", "学習済みトークン数"),
    "final_loss": ("Final training loss", "最終学習損失"),
    "final_val_loss": ("Final validation loss", "最終検証損失"),
    "checkpoints": ("Checkpoints", "チェックポイント"),
    "step": ("step", "ステップ"),
    "loss": ("loss", "損失"),
    "val_loss": ("validation loss", "検証損失"),
    "lr": ("learning rate", "学習率"),
    "phase": ("Phase", "フェーズ"),
    "evaluation": ("Evaluation over checkpoints", "チェックポイントごとの評価"),
    "bias": ("Bias metrics", "バイアス指標"),
    "final_table": ("Final results", "最終結果"),
    "task": ("Task", "タスク"),
    "metric": ("Metric", "指標"),
    "no_eval": ("No evaluation results.", "評価結果はありません。"),
    "lineage": ("Lineage", "系譜"),
    "tokenized": ("tokenized data", "トークン化データ"),
    "released": ("released model", "公開モデル"),
    "verification": ("Verification", "検証"),
    "digest": ("Release digest (SHA-256 of SHA256SUMS)", "リリースダイジェスト(SHA256SUMS の SHA-256)"),
    "digest_inside": (
        "This page is part of the release, so it cannot hold the digest: compute it with "
        "`sha256sum SHA256SUMS` and compare it with the one the producer published.",
        "このページはリリースに含まれるため、ダイジェストを記載できません。"
        "`sha256sum SHA256SUMS` で計算し、"
        "作成者が公開した値と比較してください。",
    ),
    "no_digest": ("No SHA256SUMS: this is not a release yet.", "SHA256SUMS がありません(まだリリースではありません)。"),
    "how_verify": ("How to verify", "検証方法"),
    "last_verify": ("Last verify result", "前回の検証結果"),
    "no_verify": ("No verify result recorded.", "検証結果は記録されていません。"),
    "samples": ("Samples", "出力例"),
    "prompt": ("Prompt", "プロンプト"),
    "output": ("Output", "出力"),
    "no_samples": ("No sample outputs.", "出力例はありません。"),
    "config_diff": ("Configuration differences", "設定の違い"),
    "no_config_diff": ("The configurations are the same.", "設定は同じです。"),
    "key": ("Key", "キー"),
    "delta": ("Δ (B − A)", "差 (B − A)"),
    "facts": ("Main facts", "主な数値"),
    "none": ("none", "なし"),
}


def labels(lang: str) -> dict[str, str]:
    """The labels of one language ('en' or 'ja')."""
    i = LANGS.index(lang)
    return {k: v[i] for k, v in LABELS.items()}
