"""`lsr train`: fine-tune a SPLADE model on CPU (contrastive loss with mined hard negatives,
FLOPS regularization, distillation) into a Hugging Face folder `lsr index --model DIR` loads.

Above the pipeline layer: hard negatives are mined from an index built of the training corpus.
"""
