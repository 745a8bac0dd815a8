"""What both experts share, one module per concern:

    config.py    the `train` params group, `Tasks` (train.tasks resolved), an expert's paths, model sources, `Expert`
    data.py      reading shards: split counts (JSON only) and the streamed, rank/worker-split examples
    metrics.py   binary, categorical and multi-label metrics, per epoch and per split / dataset
    trainer.py   `train_expert`: the Trainer (weighted or multi-head loss, callbacks), then the outputs
    outputs.py   predictions, the diagnostic report, plots, the metrics record, files, summary
    stage.py     the shell of stages/train_text.py and train_vision.py: command line, threads and seeds, Ctrl-C

The names below are re-exported for the notebook, the tests and the benchmarks (`training.X`).
Importing this package does not import transformers or timm (stages/training/trainer.py does, and
only the training stages import it).
"""
from stages.training.config import (Expert, ExpertPaths, Tasks, TrainConfig, TrainingInputError, hub_local_only,
                                    label_maps, resolve_model_source, resolve_pip_package, stage_parts)
from stages.training.data import (IMAGE_FIELDS, ExpertData, ModelCollator, ShardStream, SplitInfo, class_weights,
                                  padded, read_data, read_diagnostic, read_split, read_splits)
from stages.training.metrics import (Predictions, binary_f1_macro, classification_metrics, expected_calibration_error,
                                     predicted_class, split_metrics)
from stages.training.outputs import diagnostic_report, headline, predict, print_summary
from stages.training.stage import quiet_libraries

__all__ = ["Expert", "ExpertPaths", "Tasks", "TrainConfig", "TrainingInputError", "hub_local_only", "label_maps",
           "resolve_model_source", "resolve_pip_package", "stage_parts", "IMAGE_FIELDS", "ExpertData",
           "ModelCollator", "ShardStream", "SplitInfo", "class_weights", "padded", "read_data", "read_diagnostic",
           "read_split", "read_splits", "Predictions", "binary_f1_macro", "classification_metrics",
           "expected_calibration_error", "predicted_class", "split_metrics", "diagnostic_report", "headline",
           "predict", "print_summary", "quiet_libraries"]
