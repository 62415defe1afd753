"""``POST /infer/{model}`` of the app: checked before any work, run by the worker pool, cleaned up whatever happens.

MONAI Label 0.8.5's own ``/infer`` handler is ``async`` but runs the inference in the event loop (every other request
waits), reads ``params`` with ``json.loads`` (a bad one is a 500) and lets ``params`` replace the uploaded label with
any path on the server. :func:`install_infer_route` puts this handler in front of it, with the same form fields:

1. ``model`` must be one of the app's tasks (else 404) and ``params`` a JSON object of the task's options, each
   checked (:meth:`~common.label_app.tasks.BundleSynthesisTask.check_params`; else 400 with the reason);
2. a label-to-image task's ``label`` upload is written to the request's work folder and checked
   (:meth:`~common.label_app.tasks.BundleSynthesisTask.check_label`; else 400); the ``file`` upload, which these
   tasks do not use, is never written;
3. the job goes to the :class:`~common.label_app.pool.WorkerPool` (503 when its queue is full) and is cancelled if
   the client disconnects while it waits or runs;
4. the work folder is removed whatever the outcome.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from monailabel.config import settings
from monailabel.endpoints.infer import ResultType
from monailabel.endpoints.user.auth import RBAC, User
from requests_toolbelt import MultipartEncoder
from starlette.concurrency import run_in_threadpool

from common.label_app.pool import QueueFull, new_work_dir
from common.label_app.tasks import BundleSynthesisTask
from common.label_app.worker import BundleRunError, RequestCancelled

if TYPE_CHECKING:
    from common.label_app.main import BrainSynthApp

logger = logging.getLogger(__name__)

#: HTTP status logged for a request whose client went away (nginx's "client closed request"); nobody receives it.
CLIENT_CLOSED_REQUEST = 499


def _parse_params(model: str, params: str) -> dict[str, Any]:
    try:
        values = json.loads(params or "{}")
    except json.JSONDecodeError as error:
        raise HTTPException(status_code=400, detail=f"{model}: params is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        detail = f"{model}: params must be a JSON object of the task's options, got {type(values).__name__}"
        raise HTTPException(status_code=400, detail=detail)
    return values


def _save_label(task: BundleSynthesisTask, upload: UploadFile, work_dir: str) -> str:
    """Write the uploaded label into ``work_dir`` (under a name of ours, with the upload's suffix) and check it."""
    name = upload.filename or "label.nii.gz"
    path = Path(work_dir) / f"label{'.nii.gz' if name.endswith('.nii.gz') else Path(name).suffix}"
    with path.open("wb") as stream:
        shutil.copyfileobj(upload.file, stream)
    task.check_label(path)
    return str(path)


def _response(data: bytes, filename: str, details: dict[str, Any], output: ResultType | None) -> Response:
    """The result as MONAI Label answers it: the image, the details (JSON), or both (multipart, the default)."""
    if output == ResultType.image:
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        return Response(data, media_type="application/gzip", headers=headers)
    if output == ResultType.json:
        return JSONResponse(details)
    fields = {
        "params": (None, json.dumps(details), "application/json"),
        "image": (filename, data, "application/gzip"),
    }
    message = MultipartEncoder(fields=fields)
    return Response(content=message.to_string(), media_type=message.content_type)


def install_infer_route(app: FastAPI, brainsynth: BrainSynthApp) -> None:
    """Serve ``POST /infer/{model}`` of ``brainsynth``'s tasks on ``app`` (the running MONAI Label server) in front
    of MONAI Label's own handler."""
    router = APIRouter()

    @router.post("/infer/{model}", summary="Run a bundle: checked, queued, off the event loop")
    async def infer(
        request: Request,
        model: str,
        user: Annotated[User, Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))],
        output: ResultType | None = None,
        params: Annotated[str, Form()] = "{}",
        file: Annotated[UploadFile | None, File()] = None,
        label: Annotated[UploadFile | None, File()] = None,
    ) -> Response:
        task = brainsynth.tasks().get(model)
        if task is None:
            detail = f"unknown model {model!r}; served: {sorted(brainsynth.tasks())}"
            raise HTTPException(status_code=404, detail=detail)
        if output == ResultType.dicom_seg:
            detail = f"{model}: output=dicom_seg is not served; use image, json or all"
            raise HTTPException(status_code=400, detail=detail)
        work_dir = new_work_dir()
        try:
            try:
                checked = task.check_params(_parse_params(model, params))
                label_path = None
                if task.label_to_image and label is not None:
                    label_path = await run_in_threadpool(_save_label, task, label, work_dir)
                job = task.job(checked, label_path, work_dir)
            except ValueError as error:
                raise HTTPException(status_code=400, detail=f"{model}: {error}") from error
            try:
                path, details = await brainsynth.pool.run(job, request.is_disconnected)
            except QueueFull as error:
                raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "10"}) from error
            except BundleRunError as error:
                raise HTTPException(status_code=500, detail=f"{model}: {error}") from error
            except RequestCancelled:
                logger.info(f"{model}: request cancelled, its client went away")
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            data = await run_in_threadpool(Path(path).read_bytes)
        finally:
            await run_in_threadpool(shutil.rmtree, work_dir, True)
        return _response(data, f"{job.channel}.nii.gz", details, output)

    app.include_router(router)
    ours = app.router.routes[-len(router.routes) :]
    del app.router.routes[-len(router.routes) :]
    app.router.routes[0:0] = ours  # matched before MONAI Label's /infer/{model}
    app.openapi_schema = None
