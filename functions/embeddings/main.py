"""The embeddings function under functions-framework:

    functions-framework --asgi --target handle --source functions/embeddings/main.py --port 8080

A bad setting, a model that cannot be found, or an install without the
embeddings extra stops the process here, at import, with one line naming the
variable or the extra (exit status 2), as `victor serve embeddings` does.
The model itself loads beside the server on the first request.
"""

from common.framework_target import entry_settings, load_or_exit, target
from common.settings import require_extra

# Before the modules that import onnxruntime's and LanceDB's packages.
load_or_exit(lambda: require_extra("embeddings"))

from common.embedding_model import check_model_source  # noqa: E402
from functions.embeddings.function import build_function  # noqa: E402
from functions.embeddings.settings import load_embedding_settings  # noqa: E402

settings = entry_settings()
embedding = load_or_exit(load_embedding_settings)
load_or_exit(lambda: check_model_source(settings.embedding_model, settings.embedding_backend))
handle = target(build_function(embedding), settings)
