"""The deployed artifact, as everything above export reads it (docs/decisions.md, "The deployed-artifact layer"):

- `contract`: the custom ops (names, domain, attributes, input order), the state tensor names and
  the carry rule that turns a graph's `*_out.<layer>` outputs into the next decode step's inputs;
- `naming`: the name of every file of an export set (graphs, external data, manifest) and of an
  engine set (plans, sidecars);
- `manifest`: the typed `Manifest` (read once, version-checked, paths resolved against its own
  folder, hashes verified once);
- `session`: one prefill/decode interface (`Session`) with torch and ONNX Runtime implementations
  here and the TensorRT one in `mq_deploy.trt.session`; `polygraphy_runner` adapts any session to
  Polygraphy's `BaseRunner`.

Import order (a module imports downward only): cli -> validate/bench/trt -> export -> deploy ->
quant -> models/ops. export/ writes the manifest this package reads; nothing here imports onnx
(trt/ runs on machines that have only TensorRT)."""
