"""Reports about a model and its quantization that people read: the recipe comparison table
(`compare_recipes`) and the inspection plots (`inspection`, `plots`). Engine-vs-reference
comparison is validate/'s job."""
