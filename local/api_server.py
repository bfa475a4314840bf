"""The API on this machine: chalice's development server (what `chalice local` runs), with
what a client meets fixed where chalice's server differs from API Gateway.

    python -m local.api_server --stage local --host 127.0.0.1 --port 8000

What changes against `chalice local` (each was measured against it):

- **Listen backlog.** Chalice's server is threaded (`ThreadingMixIn`: every connection
  gets a thread), but it keeps the standard library's backlog of 5: 50 signed POS
  purchases sent at once saw 20-29 connection resets. `request_queue_size` is 128 here.
- **A token the gateway cannot read.** Chalice emulates the Cognito authorizer by
  decoding the token's payload without checking it; a bearer value that is not three
  base64 parts (`Bearer x`) raised inside the server and the connection closed with no
  answer. It gets what API Gateway answers for a token it refuses: the template's
  UNAUTHORIZED gateway response (401, our error envelope). Tokens that decode go on to
  the app, which verifies every token itself (chalicelib/auth.py).
- **An unknown route** gets the template's MISSING_AUTHENTICATION_TOKEN gateway response
  (404 in our envelope) instead of chalice's `{"message": ...}` 403. Gateway responses
  are read from infra/resources.json, so the local answers are the REST API's
  (`PublicApi=rest`); behind the HTTP API (the default) an unknown route gets API
  Gateway's own `{"message": "Not Found"}` 404 (README, Operations).
- **Any method** (TRACE, CONNECT, ...) reaches the app like GET or DELETE do, so a
  method a route does not have answers 405 `METHOD_NOT_ALLOWED` in our envelope (the
  standard library answered an HTML 501). Requests the HTTP parser refuses (a bad
  request line, an oversized header) and a failure inside the server get the envelope
  too, never HTML or a closed connection without an answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    EventType,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    LocalGatewayAuthorizer,
    LocalGatewayException,
    ThreadedHTTPServer,
)

ROOT = Path(__file__).resolve().parent.parent
REQUEST_QUEUE_SIZE = 128
# API Gateway's own status for each response type this server answers itself; the
# template's StatusCode overrides it, as in AWS.
DEFAULT_GATEWAY_STATUS = {"UNAUTHORIZED": 401, "MISSING_AUTHENTICATION_TOKEN": 403}
GATEWAY_RESPONSE_TYPE = "AWS::ApiGateway::GatewayResponse"

logger = logging.getLogger("local.api_server")


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()


class MalformedRequest(Exception):
    """A request chalice's server cannot read (answered 400)."""


class GatewayAnswer(LocalGatewayException):
    """A response the gateway gives without calling the function."""

    def __init__(self, status: int, body: bytes, error_type: str) -> None:
        super().__init__(
            {
                "Content-Type": "application/json",
                "x-amzn-RequestId": str(uuid.uuid4()),
                "x-amzn-ErrorType": error_type,
            },
            body,
        )
        self.CODE = status


def gateway_responses(template: dict[str, Any] | None = None) -> dict[str, tuple[int, bytes]]:
    """The template's gateway responses: response type -> (status, body)."""
    from local.infra import resources_of_type

    answers: dict[str, tuple[int, bytes]] = {}
    for resource in resources_of_type(GATEWAY_RESPONSE_TYPE, template).values():
        props = resource["Properties"]
        kind = props["ResponseType"]
        status = props.get("StatusCode") or DEFAULT_GATEWAY_STATUS.get(kind)
        if status is None:
            continue
        answers[kind] = (int(status), props["ResponseTemplates"]["application/json"].encode())
    return answers


class LocalGatewayResponses:
    def __init__(self, answers: dict[str, tuple[int, bytes]]) -> None:
        missing = set(DEFAULT_GATEWAY_STATUS) - set(answers)
        if missing:
            raise RuntimeError(f"infra/resources.json has no gateway response for {missing}")
        self._answers = answers

    def answer(self, kind: str, error_type: str) -> GatewayAnswer:
        status, body = self._answers[kind]
        return GatewayAnswer(status, body, error_type)


class CognitoEmulation(LocalGatewayAuthorizer):
    def __init__(self, app_object: Chalice, responses: LocalGatewayResponses) -> None:
        super().__init__(app_object)
        self._responses = responses

    def _decode_jwt_payload(self, jwt: str) -> dict[str, Any]:
        # Chalice reads the payload without checking it (API Gateway would check it), and
        # raised on anything that is not three base64 parts with a JSON object inside.
        try:
            claims = super()._decode_jwt_payload(jwt)
        except (IndexError, ValueError, UnicodeDecodeError):
            claims = None
        if not isinstance(claims, dict):
            raise self._responses.answer("UNAUTHORIZED", "UnauthorizedException")
        return claims


class Gateway(LocalGateway):
    def __init__(self, app_object: Chalice, config: Config, responses: LocalGatewayResponses):
        super().__init__(app_object, config)
        self._authorizer = CognitoEmulation(app_object, responses)
        self._responses = responses

    def _generate_lambda_event(
        self, method: str, path: str, headers: dict[str, Any], body: bytes | None
    ) -> EventType:
        try:
            return super()._generate_lambda_event(method, path, headers, body)
        except ValueError:  # no route matches the path
            raise self._responses.answer(
                "MISSING_AUTHENTICATION_TOKEN", "MissingAuthenticationTokenException"
            ) from None


def _no_query(path: str) -> str:
    return path.split("?", 1)[0]


class RequestHandler(ChaliceRequestHandler):
    def __init__(
        self,
        request: Any,
        client_address: tuple[str, int],
        server: Any,
        app_object: Chalice,
        config: Config,
        responses: LocalGatewayResponses,
    ) -> None:
        self._gateway_args = (app_object, config, responses)
        super().__init__(request, client_address, server, app_object=app_object, config=config)

    def setup(self) -> None:
        super().setup()
        # Before the request is read (the base __init__ handles it right away).
        self.local_gateway = Gateway(*self._gateway_args)

    def __getattr__(self, name: str) -> Any:
        # The standard library answers a method without a do_<METHOD> with an HTML 501;
        # every method goes to the app instead, which knows which methods a route has.
        if name.startswith("do_"):
            return self._handle_any
        raise AttributeError(name)

    def _parse_payload(self) -> tuple[dict[str, Any], bytes | None]:
        if not str(self.headers.get("content-length", "0")).isdigit():
            raise MalformedRequest("Content-Length is not a number")
        return super()._parse_payload()

    def _handle_any(self) -> None:
        try:
            self._generic_handle()
        except MalformedRequest as exc:
            self.send_error(HTTPStatus.BAD_REQUEST, str(exc))
        except TimeoutError:
            raise  # the standard library logs it and closes the connection
        except Exception:
            logger.exception("the local server failed on %s %s", self.command, _no_query(self.path))
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The access log without the query: a look-up's query names a phone number."""
        self.log_message('"%s %s" %s %s', self.command, _no_query(self.path), code, size)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _handle_any

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the HTTP layer refuses (bad request line, oversized headers), in our envelope."""
        status = HTTPStatus(code)
        failed = status == HTTPStatus.INTERNAL_SERVER_ERROR
        error = "INTERNAL_ERROR" if failed else status.name
        text = "an internal error occurred" if failed else (message or status.phrase)
        body = error_body(error, text)
        self.log_error("code %d, message %s", code, text)
        self.send_response(code, status.phrase)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if getattr(self, "command", "") != "HEAD":
            self.wfile.write(body)


class Server(ThreadedHTTPServer):
    """One thread per connection (as chalice's), with room for a burst of connections."""

    request_queue_size = REQUEST_QUEUE_SIZE


def create_server(app_obj: Chalice, config: Config, host: str, port: int) -> LocalDevServer:
    # What chalice.local.create_local_server does: current_request becomes thread-local.
    CustomLocalChalice.__bases__ = (LocalChalice, app_obj.__class__)
    app_obj.__class__ = CustomLocalChalice
    responses = LocalGatewayResponses(gateway_responses())

    def handler(request: Any, client_address: tuple[str, int], server: Any, **kw: Any) -> Any:
        return RequestHandler(request, client_address, server, responses=responses, **kw)

    return LocalDevServer(app_obj, config, host, port, handler_cls=handler, server_cls=Server)


def build(stage: str, host: str, port: int) -> LocalDevServer:
    """Load app.py with the stage's environment, as `chalice local --stage` does."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.validate import validate_routes

    os.environ["AWS_CHALICE_CLI_MODE"] = "true"
    factory = CLIFactory(project_dir=str(ROOT), environ=os.environ)
    config = factory.create_config_obj(chalice_stage_name=stage)
    app_obj = config.chalice_app
    validate_routes(app_obj.routes)
    return create_server(app_obj, config, host, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="local")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # As `chalice local`: the app's logs go to stdout.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    server = build(args.stage, args.host, args.port)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in `make run` reaches us too
        server.serve_forever()


if __name__ == "__main__":
    main()
