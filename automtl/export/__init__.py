"""automtl.export: carry a chosen trial into other tools (configs, scripts, serving models)."""

from automtl.export.fuxictr import FUXICTR_MODELS, FuxiCTRExport, fuxictr_config, write_fuxictr
from automtl.export.rechub import RECHUB_MODELS, RechubExport, rechub_script, write_rechub
from automtl.export.serving import (
    TensorModel,
    example_inputs,
    export_onnx,
    export_torchscript,
    input_names,
)
from automtl.export.tables import split_table, write_processed_csv
from automtl.export.trial import (
    FORMATS,
    ChosenTrial,
    ExportResult,
    choose_trial,
    config_text,
    export_trial,
    load_weights,
    trained_model,
)

__all__ = [
    "FORMATS", "FUXICTR_MODELS", "RECHUB_MODELS", "ChosenTrial", "ExportResult", "FuxiCTRExport",
    "RechubExport", "TensorModel", "choose_trial", "config_text", "example_inputs", "export_onnx",
    "export_torchscript", "export_trial", "fuxictr_config", "input_names", "load_weights",
    "rechub_script", "split_table", "trained_model", "write_fuxictr", "write_processed_csv",
    "write_rechub",
]

# `automtl.export(...)` calls automtl.api.export (this subpackage shares the name)
from automtl.api import call_through  # noqa: E402

call_through(__name__, "export")
