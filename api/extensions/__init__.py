"""Extension objects. flask-smorest keeps one OpenAPI spec per `Api`, so each app gets
its own (tests build several apps); `create_app()` binds them."""

from api.extensions.smorest import Api, Blueprint

__all__ = ["Api", "Blueprint"]
