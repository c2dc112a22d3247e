"""The Open Inference Protocol (v2, HTTP/REST) in `catdog serve`, beside its own endpoints.

    GET  /v2/health/live, /v2/health/ready, /v2
    GET  /v2/models/catdog[/versions/vNNNN][/ready]
    POST /v2/models/catdog[/versions/vNNNN]/infer

One input, either `image` (BYTES [N]: encoded image files, base64 strings in JSON or raw with the
binary tensor extension that tritonclient uses) or `pixels` (UINT8 [N, S, S, 1]: images already
converted, S the model's input side); outputs `p_dog` (FP32 [N]) and `label` (BYTES [N]). The
same conversion, batching, budgets, prediction log, token and hot reload as POST /predict.
Errors come as {"error": "..."} with 400 (bad request), 404 (no such model or version), 413,
or 503 (not ready; over a budget, with Retry-After).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from catdog.registry.store import RegistryError
from catdog.serving.admission import BodyTooLarge, Overloaded, limited
from catdog.serving.client_errors import public

MODEL = "catdog"
HEADER_LENGTH = "Inference-Header-Content-Length"  # the binary tensor data extension's header


class ProtocolError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def error(message: str, status: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": public(message)}, status_code=status, headers=headers)


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: list | np.ndarray  # BYTES: a list of bytes; numbers: an array


def read_request(body: bytes, header_length: str | None) -> tuple[dict, list[Tensor]]:
    """The request's JSON and its input tensors, binary parts included."""
    size = len(body) if header_length is None else int(header_length)
    if not 0 < size <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} {header_length} does not fit a body of {len(body)} bytes")
    try:
        request = json.loads(body[:size])
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise ProtocolError(f"the inference request is not JSON: {problem}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise ProtocolError("the inference request needs 'inputs', a list of tensors")
    binary, offset, tensors = memoryview(body)[size:], 0, []
    for item in request["inputs"]:
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers")
        binary_size = (item.get("parameters") or {}).get("binary_data_size")
        if binary_size is not None:
            raw = bytes(binary[offset : offset + binary_size])
            if len(raw) != binary_size:
                raise ProtocolError(f"input {name!r}: binary_data_size {binary_size} is past the end of the body")
            offset += binary_size
            values = _unpack_bytes(raw, name) if datatype == "BYTES" else _numbers(raw, datatype, name)
        else:
            values = _json_values(item.get("data"), datatype, name)
        tensors.append(Tensor(name, datatype, shape, values))
    return request, tensors


def _unpack_bytes(raw: bytes, name: str) -> list[bytes]:
    """BYTES elements in binary form: each a 4-byte little-endian length, then its bytes."""
    values, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError(f"input {name!r}: a BYTES element's length is cut short")
        (length,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4 : offset + 4 + length])
        if len(values[-1]) != length:
            raise ProtocolError(f"input {name!r}: a BYTES element is cut short")
        offset += 4 + length
    return values


def _numbers(raw: bytes, datatype: str, name: str) -> np.ndarray:
    if datatype != "UINT8":
        raise ProtocolError(f"input {name!r}: datatype {datatype} is not accepted (image: BYTES, pixels: UINT8)")
    return np.frombuffer(raw, np.uint8)


def _json_values(data, datatype: str, name: str):
    if data is None:
        raise ProtocolError(f"input {name!r}: no 'data' and no binary_data_size")
    flat = np.asarray(data, dtype=object).reshape(-1).tolist() if isinstance(data, list) else [data]
    if datatype == "BYTES":
        try:
            return [base64.b64decode(v, validate=True) for v in flat]
        except (binascii.Error, TypeError, ValueError):
            raise ProtocolError(f"input {name!r}: BYTES elements in JSON must be base64 strings of the files") from None
    if datatype == "UINT8":
        values = np.asarray(flat)
        if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() > 255):
            raise ProtocolError(f"input {name!r}: UINT8 data must be integers 0-255")
        return values.astype(np.uint8)
    raise ProtocolError(f"input {name!r}: datatype {datatype} is not accepted (image: BYTES, pixels: UINT8)")


# ---------------------------------------------------------------- the answer


def outputs_json(request: dict, p_dog: list[float], labels: list[str]) -> tuple[dict, list[bytes]]:
    """The response's JSON and binary parts, as the request asked (binary where it said so)."""
    wanted = request.get("outputs") or [{"name": "p_dog"}, {"name": "label"}]
    all_binary = bool((request.get("parameters") or {}).get("binary_data_output"))
    outputs, blobs = [], []
    for item in wanted:
        name = item.get("name")
        if name not in ("p_dog", "label"):
            raise ProtocolError(f"output {name!r}: this model has outputs 'p_dog' and 'label'")
        binary = (item.get("parameters") or {}).get("binary_data", all_binary)
        tensor = {"name": name, "datatype": "FP32" if name == "p_dog" else "BYTES", "shape": [len(p_dog)]}
        if binary:
            blob = (
                np.asarray(p_dog, "<f4").tobytes()
                if name == "p_dog"
                else b"".join(struct.pack("<I", len(x.encode())) + x.encode() for x in labels)
            )
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = p_dog if name == "p_dog" else labels
        outputs.append(tensor)
    return {"outputs": outputs}, blobs


def respond(body: dict, blobs: list[bytes]) -> Response:
    header = json.dumps(body).encode()
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(blobs), media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(header))}
    )


def metadata(side: int, versions: list[str]) -> dict:
    return {
        "name": MODEL,
        "versions": versions,
        "platform": "tensorflow_keras",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "pixels", "datatype": "UINT8", "shape": [-1, side, side, 1]},
        ],
        "outputs": [
            {"name": "p_dog", "datatype": "FP32", "shape": [-1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def v2_probes(holder) -> APIRouter:
    """Liveness and readiness, which a platform asks without a token."""
    router = APIRouter(prefix="/v2")

    @router.get("/health/live")
    async def live():
        return {"live": True}

    @router.get("/health/ready")
    async def ready():
        return JSONResponse({"ready": holder.current is not None}, status_code=200 if holder.current else 503)

    return router


def v2_router(setup, holder, answering, admission) -> APIRouter:
    router = APIRouter(prefix="/v2")

    async def model_for(name: str, version: str | None):
        if name != MODEL:
            raise ProtocolError(f"no model {name!r}: this server serves '{MODEL}'", 404)
        if holder.current is None:
            raise ProtocolError(f"not ready: {holder.problem}", 503)
        if version is None or version == holder.current.version:
            return holder.current
        try:
            return await holder.version(version)
        except RegistryError as problem:
            raise ProtocolError(str(problem), 404) from None

    @router.get("")
    async def server_metadata():
        from importlib.metadata import version as installed

        return {"name": "catdog", "version": installed("catdog"), "extensions": ["binary_tensor_data"]}

    @router.get("/models/{name}")
    @router.get("/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None):
        try:
            served = await model_for(name, version)
        except ProtocolError as problem:
            return error(str(problem), problem.status)
        return metadata(served.image_size, setup.registry.versions())

    @router.get("/models/{name}/ready")
    @router.get("/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None):
        try:
            await model_for(name, version)
        except ProtocolError as problem:
            return JSONResponse(
                {"name": name, "ready": False, "error": public(str(problem))}, status_code=problem.status
            )
        return {"name": name, "ready": True}

    @router.post("/models/{name}/infer")
    @router.post("/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None):
        started = time.perf_counter()
        try:
            served = await model_for(name, version)
            declared = int(request.headers.get("content-length") or setup.body_limit)
            if declared > setup.body_limit:
                raise ProtocolError(f"request too large: at most {setup.body_limit:,} bytes", 413)
            with admission.request_bytes(declared):
                body = await _body(request, setup.body_limit)
                parsed, tensors = read_request(body, request.headers.get(HEADER_LENGTH))
                del body
                p_dog = await _answer(tensors, served, answering, started)
            reply, blobs = outputs_json(parsed, p_dog, [("dog" if p >= served.threshold else "cat") for p in p_dog])
        except Overloaded as busy:
            return error(busy.reason, 503, {"Retry-After": str(busy.retry_after)})
        except ProtocolError as problem:
            return error(str(problem), problem.status)
        reply = {
            "model_name": MODEL,
            "model_version": served.version,
            **({"id": parsed["id"]} if "id" in parsed else {}),
            **reply,
        }
        return respond(reply, blobs)

    return router


async def _body(request: Request, limit: int) -> bytes:
    try:
        return await Request(request.scope, limited(request.receive, limit)).body()
    except BodyTooLarge:
        raise ProtocolError(f"request too large: at most {limit:,} bytes", 413) from None


async def _answer(tensors: list[Tensor], served, answering, started: float) -> list[float]:
    if len(tensors) != 1 or tensors[0].name not in ("image", "pixels"):
        raise ProtocolError(
            f"send one input, 'image' (BYTES) or 'pixels' (UINT8 [N,{served.image_size},"
            f"{served.image_size},1]); got {[t.name for t in tensors]}"
        )
    tensor = tensors[0]
    if tensor.name == "image":
        if tensor.datatype != "BYTES" or len(tensor.shape) != 1 or tensor.shape[0] != len(tensor.values):
            raise ProtocolError(
                f"input 'image': BYTES of shape [N] with N elements; got {tensor.datatype} "
                f"{tensor.shape} with {len(tensor.values)}"
            )
        if tensor.shape[0] > answering.setup.params.max_files:
            raise ProtocolError(f"input 'image': at most {answering.setup.params.max_files} images (serve.max_files)")

        async def files():
            for i, data in enumerate(tensor.values):
                yield f"image[{i}]", data

        results = await answering.answer(files(), served, started)
    else:
        side = served.image_size
        if (
            tensor.datatype != "UINT8"
            or tensor.shape[1:] != [side, side, 1]
            or len(tensor.shape) != 4
            or tensor.values.size != int(np.prod(tensor.shape))
        ):
            raise ProtocolError(
                f"input 'pixels': UINT8 of shape [N,{side},{side},1] (the model's input) with as "
                f"many values; got {tensor.datatype} {tensor.shape} with {len(tensor.values)} values"
            )
        images = tensor.values.reshape(tensor.shape)[..., 0]
        results = await answering.answer_converted(
            [answering.from_pixels(f"pixels[{i}]", image) for i, image in enumerate(images)], served, started
        )
    unreadable = [r for r in results if "error" in r]
    if unreadable:
        raise ProtocolError("; ".join(f"{r['file']}: {r['error']}" for r in unreadable))
    return [r["p_dog"] for r in results]
