"""A reproduction of the official python3-http template's ``index.py`` (python-flask-template @ e01a882,
template/python3-http/index.py; docs/contract.md), run as its own process by
tests/contract/test_template_process.py. One deviation: the port comes from ``TEMPLATE_PORT`` (the
template hard-codes 5000, which parallel test runs would share)."""

import os

from flask import Flask, jsonify, request
from function import handler
from waitress import serve

app = Flask(__name__)


class Event:
    def __init__(self):
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


def format_status_code(res):
    if "statusCode" in res:
        return res["statusCode"]
    return 200


def format_body(res, content_type):
    if content_type == "application/octet-stream":
        return res["body"]
    if "body" not in res:
        return ""
    elif type(res["body"]) is dict:
        return jsonify(res["body"])
    else:
        return str(res["body"])


def format_headers(res):
    if "headers" not in res:
        return []
    elif type(res["headers"]) is dict:
        return list(res["headers"].items())
    return res["headers"]


def get_content_type(res):
    content_type = ""
    if "headers" in res:
        content_type = res["headers"].get("Content-type", "")
    return content_type


def format_response(res):
    if res is None:
        return ("", 200)
    if type(res) is dict:
        status_code = format_status_code(res)
        content_type = get_content_type(res)
        body = format_body(res, content_type)
        headers = format_headers(res)
        return (body, status_code, headers)
    return res


@app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
@app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
def call_handler(path):
    event = Event()
    context = Context()
    response_data = handler.handle(event, context)
    res = format_response(response_data)
    return res


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("TEMPLATE_PORT", "5000")))
