"""The functions behind the CLI verbs, callable from Python with the same meaning. Each one checks
every input it can before the long work starts, so a bad input costs seconds, not a calibration."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .data.calibration import calibration_batches, check_window_counts
from .errors import MQDeployError
from .eval import evaluate_model
from .eval.fidelity import FPReference
from .eval.perplexity import check_eval_windows
from .models.checkpoints import is_vision_checkpoint, load_checkpoint, load_language_config
from .models.tokenizer import load_tokenizer
from .outputs import check_output_dir

EVAL_SEQ_LEN = 512          # quantize --eval: windows of eval's default length


def load_for_eval(model_dir):
    """(model, tokenizer getter, description) for an FP checkpoint or a quantized artifact directory.
    The tokenizer is loaded only if a text has to be tokenized (token ids need none)."""
    from .eval.model_loading import load_eval_model
    model, label = load_eval_model(model_dir)
    return model, lambda: load_tokenizer(Path(model_dir), model.config.tokenizer), label


def evaluate_text(model_dir, text: str, seq_len: int = 512, batch_size: int = 8, max_tokens: int | None = None,
                  progress: bool = True) -> dict:
    check_eval_windows(seq_len, batch_size, max_tokens)
    model, tokenizer, label = load_for_eval(model_dir)
    return {"model": str(model_dir), "kind": label,
            **evaluate_model(model, tokenizer, text, seq_len=seq_len, batch_size=batch_size, max_tokens=max_tokens,
                             progress=progress, option="--text")}


def quantize_checkpoint(model_dir, out_dir, recipe: str = "mambaquant", calib: str = "pydoc-topics",
                        w_bits: int = 8, a_bits: int | None = None, mode: str = "deploy", calib_samples: int = 32,
                        calib_seq_len: int = 512, eval_text: str | None = None, eval_max_tokens: int | None = None,
                        progress: bool = True, force: bool = False, export_check: bool = True,
                        **quant_options) -> dict:
    """Quantize a checkpoint directory and write the artifact; returns the report (also in report.json).

    a_bits None: 8 with 8-bit weights, 16 with 4-bit weights (W4A16, what TensorRT runs).
    export_check: in deploy mode, refuse settings that `export` cannot deploy (W4A8) before any work.
    force: replace `out_dir` if it holds a previous artifact of ours (never anything else)."""
    from .quant.artifact import is_own_artifact, is_quantized_artifact, save_quantized
    from .quant.config import QuantConfig
    from .quant.quantize import check_recipe_options
    from .quant.mixed_precision import check_mixed_precision
    from .quant.quantize import quantize
    from .quant.recipes import get_recipe

    unknown = sorted(set(quant_options) - set(QuantConfig.__dataclass_fields__))
    if unknown:
        raise MQDeployError(f"quantize_checkpoint() got unknown option(s) {', '.join(unknown)}; the QuantConfig "
                            f"options are {', '.join(sorted(QuantConfig.__dataclass_fields__))}")
    config = QuantConfig(w_bits=w_bits, a_bits=a_bits, mode=mode, **quant_options)
    get_recipe(recipe)
    check_recipe_options(recipe, config)
    if export_check and mode == "deploy" and config.export_blocker():
        raise MQDeployError(f"deploy mode cannot export {config.export_blocker()}; or pass "
                            "--no-export-check (export_check=False) to write a fake-quant-only artifact")
    check_window_counts(calib_samples, calib_seq_len)
    if eval_max_tokens is not None:
        check_eval_windows(EVAL_SEQ_LEN, 1, eval_max_tokens)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if is_quantized_artifact(model_dir):
        raise MQDeployError(f"--model {model_dir} is a quantized artifact; quantize the FP checkpoint it was made from "
                            "(quant.json names it under source)")
    if is_vision_checkpoint(model_dir):
        return _quantize_vision(model_dir, out_dir, recipe, calib, config, calib_samples, eval_text, progress, force)
    load_language_config(model_dir)             # the model directory first: a clearer error than the output's
    check_output_dir(out_dir, "quantized artifact", is_own_artifact, force,
                     inputs=[model_dir, calib, eval_text], option="--out")
    loaded = load_checkpoint(model_dir)          # Mamba-1 or Mamba-2
    vocab = loaded.config.vocab_size
    check_mixed_precision(loaded.model, config)
    batches, calib_label = calibration_batches(lambda: loaded.tokenizer, calib, calib_samples, calib_seq_len,
                                               vocab, option="--calib")
    if eval_text:                               # read (and check) it now, not after the calibration
        from .data.sources import load_tokens
        tokens = load_tokens(eval_text, lambda: loaded.tokenizer, vocab, "--eval").stream.size
        if min(tokens, eval_max_tokens or tokens) < EVAL_SEQ_LEN:
            raise MQDeployError(f"--eval {eval_text} has {min(tokens, eval_max_tokens or tokens)} tokens (after "
                                f"--eval-max-tokens), fewer than one {EVAL_SEQ_LEN}-token window; give a longer text")
    start = time.perf_counter()
    qm = quantize(loaded.model, recipe, batches, config, progress=progress)
    report = {"recipe": recipe, "config": qm.config.to_dict(), "calibration": {
        "text": calib_label, "samples": int(batches.shape[0]), "seq_len": int(batches.shape[1]),
        "device": config.device, "forward_dtype": str(config.forward_dtype).replace("torch.", ""),
        "seconds": round(time.perf_counter() - start, 2), "stages": {k: round(v, 2) for k, v in qm.seconds.items()}}}
    if qm.mixed_precision:
        report["mixed_precision"] = qm.mixed_precision
    if qm.awq_alpha:
        report["awq_alpha"] = qm.awq_alpha
    if eval_text:
        # KL(FP ‖ quantized) beside perplexity: on a model that has not learned the text (a random-init
        # one), perplexity barely moves however far the distributions do. One quantized model reads the
        # FP log-probs once: a small cache (a 50k vocabulary's window is 205 MB), the rest recomputed.
        kwargs = dict(seq_len=EVAL_SEQ_LEN, max_tokens=eval_max_tokens, progress=progress, option="--eval",
                      reference=FPReference(loaded.model, cache_bytes=256 << 20))
        eval_start = time.perf_counter()
        fp = evaluate_model(loaded.model, lambda: loaded.tokenizer, eval_text, **kwargs)
        q = evaluate_model(qm.model, lambda: loaded.tokenizer, eval_text, **kwargs)
        report["eval"] = {"text": fp["text"], "tokens": fp["scored_tokens"], "fp_perplexity": fp["perplexity"],
                          "quantized_perplexity": q["perplexity"], "fp_bits_per_byte": fp["bits_per_byte"],
                          "quantized_bits_per_byte": q["bits_per_byte"],
                          "perplexity_change_percent": 100 * (q["perplexity"] / fp["perplexity"] - 1),
                          "kl_per_token": q["kl_per_token"],
                          "unigram_perplexity": 2.0 ** fp["unigram_bits_per_token"],
                          "seconds": round(time.perf_counter() - eval_start, 2)}
    save_quantized(qm, out_dir, source_dir=model_dir, report=report, replace=force)
    return report


def _quantize_vision(model_dir: Path, out_dir: Path, recipe: str, calib: str, config, calib_samples: int,
                     eval_source: str | None, progress: bool, force: bool) -> dict:
    """quantize_checkpoint for a Vision Mamba: calibration images instead of token windows, top-1 on
    labelled images instead of perplexity."""
    from .data.image_sources import BUNDLED, MAX_EVAL_IMAGES, check_labels, load_image_source
    from .data.images import top1_agreement, topk_accuracy
    from .models.vim_loading import load_vim
    from .quant.artifact import is_own_artifact, save_quantized
    from .quant.quantize import quantize
    if config.effective_bits is not None or config.keep_linears:
        raise MQDeployError("--effective-bits and --keep-linears are not supported for Vision Mamba yet; quantize "
                            "every linear (drop the option)")
    if calib == "pydoc-topics" or (not Path(calib).exists() and calib not in BUNDLED):
        raise MQDeployError(f"--calib {calib}: a Vision Mamba calibrates on images: give a folder of images, a .npy "
                            f"of preprocessed images, or one of {', '.join(BUNDLED)}")
    check_output_dir(out_dir, "quantized artifact", is_own_artifact, force, inputs=[model_dir, calib, eval_source],
                     option="--out")
    loaded = load_vim(model_dir)
    size = loaded.config.img_size
    calib_set = load_image_source(calib, size, calib_samples, option="--calib")
    evaluation = load_image_source(eval_source, size, MAX_EVAL_IMAGES, option="--eval") if eval_source else None
    if evaluation is not None and evaluation.labels is None:
        raise MQDeployError(f"--eval {eval_source} has no labels; give a folder in the ImageFolder layout "
                            "(root/<class>/<image>), digits:heldout or mnist:heldout")
    if evaluation is not None:
        check_labels(evaluation, loaded.config.num_classes, "--eval")
    if len(calib_set.images) < calib_samples:     # said before the long work (after every check), as for a text
        print(f"note: --calib {calib_set.label} holds {len(calib_set.images)} images, not the {calib_samples} asked "
              f"for; calibrating on {len(calib_set.images)} (give more images for more)", file=sys.stderr)
    start = time.perf_counter()
    qm = quantize(loaded.model, recipe, calib_set.images, config, progress=progress)
    report = {"recipe": recipe, "config": qm.config.to_dict(), "calibration": {
        "images": calib_set.label, "samples": int(calib_set.images.shape[0]), "device": config.device,
        "forward_dtype": str(config.forward_dtype).replace("torch.", ""),
        "seconds": round(time.perf_counter() - start, 2), "stages": {k: round(v, 2) for k, v in qm.seconds.items()}}}
    if qm.awq_alpha:
        report["awq_alpha"] = qm.awq_alpha
    if evaluation is not None:
        eval_start = time.perf_counter()
        fp, q = classify(loaded.model, evaluation.images), classify(qm.model, evaluation.images)
        report["eval"] = {"images": evaluation.label, "count": int(len(evaluation.labels)),
                          "fp_top1": topk_accuracy(fp, evaluation.labels, ks=(1,))["top1"],
                          "quantized_top1": topk_accuracy(q, evaluation.labels, ks=(1,))["top1"],
                          "top1_agreement": top1_agreement(q, fp), "seconds": round(time.perf_counter() - eval_start, 2)}
    save_quantized(qm, out_dir, source_dir=model_dir, report=report, replace=force)
    return report


def classify(model, images, batch_size: int = 64):
    """Logits [n, classes] of a vision model over `images` (preprocessed float [n, 3, H, W], a torch
    tensor or a numpy array, e.g. `load_image_source(...).images`), a batch at a time."""
    import torch
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or images.shape[1] != 3:
        raise MQDeployError(f"classify takes preprocessed images [n, 3, H, W]; got shape {tuple(images.shape)}")
    with torch.no_grad():
        return torch.cat([model(chunk) for chunk in images.split(batch_size)])
