"""The embeddings function under functions-framework:

    functions-framework --asgi --target handle --source functions/embeddings/main.py --port 8080

A bad setting, or a model that cannot be found, stops the process here, at
import, with one line naming the variable (exit status 2), as `victor serve
embeddings` does. The model itself loads beside the server on the first request.
"""

from common.embedding_model import check_model_source
from common.framework_target import entry_settings, load_or_exit, target
from functions.embeddings.function import build_function
from functions.embeddings.settings import load_embedding_settings

settings = entry_settings()
embedding = load_or_exit(load_embedding_settings)
load_or_exit(lambda: check_model_source(settings.embedding_model))
handle = target(build_function(embedding), settings)
