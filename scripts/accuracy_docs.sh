#!/usr/bin/env bash
# Regenerates the recipe comparisons in docs/ (issue 17): every recipe x bit setting x mode, and the
# NVIDIA ModelOpt peers when nvidia-modelopt is installed, on the bundled demo model, calibrated on
# samples/data/wiki_calib.txt and evaluated on two held-out texts. About 20 minutes a text on 2 cores (3 seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
model=samples/models/mamba-byte-demo
calib=samples/data/wiki_calib.txt
python3 -m mq_deploy compare-recipes --model "$model" --calib "$calib" \
    --eval samples/data/wiki_heldout.txt --out docs/compare_recipes_demo_wiki --force
python3 -m mq_deploy compare-recipes --model "$model" --calib "$calib" \
    --eval pydoc-topics --out docs/compare_recipes_demo_pydoc --force
# the larger comparison model (samples/models/mamba-byte-8m, 7.8 M parameters, outlier channels), deploy mode:
# about 40 minutes a text on 2 cores
for text in samples/data/wiki_heldout.txt pydoc-topics; do
    name=$([ "$text" = pydoc-topics ] && echo pydoc || echo wiki)
    python3 -m mq_deploy compare-recipes --model samples/models/mamba-byte-8m --calib "$calib" --eval "$text" \
        --modes deploy --out "docs/compare_recipes_8m_$name" --force
done
# MambaQuant at W4A16 with and without its smoothings (docs/comparison_model.md, "W4A16"): about 15 minutes
python3 benchmarks/bench_a16_smoothing.py
# the 4-bit weight options (rtn / gptq / awq, mixed precision) per recipe, both texts: about 30 minutes
python3 benchmarks/bench_weight_options.py --out docs/weight_options_demo.md
# the same on the comparison model, wiki only, rtn and mambaquant, one seed: about 10 minutes
python3 benchmarks/bench_weight_options.py --model samples/models/mamba-byte-8m \
    --texts samples/data/wiki_heldout.txt --recipes rtn mambaquant --seeds 1 --mixed --out docs/weight_options_8m.md
# every recipe on the vision demo model (digits): about 2 minutes
python3 benchmarks/bench_vision_recipes.py --data digits --out docs/vision_recipes_demo.md
# the same on the vision comparison model (samples/models/vim-mnist-comparison, Vim-T's width, 1,000 held-out
# MNIST images): about 19 minutes
python3 benchmarks/bench_vision_recipes.py --data mnist --out docs/vision_recipes_mnist.md
# the recipes on the Mamba-2 demo model, deploy mode (paper mode: the last lines): about 6 minutes
python3 -m mq_deploy compare-recipes --model samples/models/mamba2-byte-demo --calib "$calib" \
    --eval samples/data/wiki_heldout.txt --modes deploy --peers --out docs/compare_recipes_mamba2_demo_wiki --force
# the larger Mamba-2 comparison model (samples/models/mamba2-byte-8m, 7.7 M parameters, outlier channels),
# deploy mode, both texts: about 21 minutes a text on 2 cores
for text in samples/data/wiki_heldout.txt pydoc-topics; do
    name=$([ "$text" = pydoc-topics ] && echo pydoc || echo wiki)
    python3 -m mq_deploy compare-recipes --model samples/models/mamba2-byte-8m --calib "$calib" --eval "$text" \
        --modes deploy --peers --out "docs/compare_recipes_mamba2_8m_$name" --force
done
# both Mamba-2 models with the depthwise conv quantized too (--quantize-conv: its input at A8, where MambaQuant's S7
# smoothing acts in deploy mode), W8A8 and W4A8: about 5 minutes for the demo, 14 a text for the 8 M model
python3 -m mq_deploy compare-recipes --model samples/models/mamba2-byte-demo --calib "$calib" \
    --eval samples/data/wiki_heldout.txt --modes deploy --bits W8A8 W4A8 --peers --quantize-conv \
    --out docs/compare_recipes_mamba2_demo_conv_wiki --force
for text in samples/data/wiki_heldout.txt pydoc-topics; do
    name=$([ "$text" = pydoc-topics ] && echo pydoc || echo wiki)
    python3 -m mq_deploy compare-recipes --model samples/models/mamba2-byte-8m --calib "$calib" --eval "$text" \
        --modes deploy --bits W8A8 W4A8 --peers --quantize-conv --out "docs/compare_recipes_mamba2_8m_conv_$name" --force
done
# which part of MambaQuant pays with the conv quantized, W8A8: about 8 minutes
python3 benchmarks/bench_mambaquant_components.py --bits W8A8 --quantize-conv \
    --variants "MambaQuant, R1 = H" "MambaQuant, no smoothing" QuaRot --out docs/mambaquant_components_mamba2_8m_conv
# MambaQuant's parts (R1's KLT, the smoothings) ablated on it, W8A8 and W4A8: about 20 minutes
python3 benchmarks/bench_mambaquant_components.py --out docs/mambaquant_components_mamba2_8m
# paper mode on both demo models: MambaQuant with and without its S4 + R4 at the scan's h·C contraction,
# beside QuaRot and Quamba, W8A8 and W4A8, 2 seeds: about 10 minutes a model
for arch in mamba2 mamba1; do
    dir=$([ "$arch" = mamba2 ] && echo mamba2-byte-demo || echo mamba-byte-demo)
    python3 benchmarks/bench_mambaquant_components.py --model "samples/models/$dir" --mode paper --bits W8A8 W4A8 \
        --variants "MambaQuant, no S4 + R4" QuaRot Quamba --seeds 2 --max-tokens 32768 \
        --out "docs/mambaquant_components_paper_${arch}_demo"
done
