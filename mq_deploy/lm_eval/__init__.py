"""The lm-evaluation-harness adapter: `mq-deploy lm-eval --model mq-deploy --model_args path=...`
scores an FP model, a quantized artifact, an ONNX export or an engine through the deploy layer's
sessions (docs/lm_eval.md). lm-eval is the optional `eval` extra; nothing here is imported unless
that verb or `mq_deploy.lm_eval.adapter` is."""
