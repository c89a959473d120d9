"""Registry of adversarial schemes: ``@register("name")`` on a GAN subclass, ``get("name")`` to find it."""

from __future__ import annotations

_SCHEMES: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        _SCHEMES[name] = cls
        cls.scheme_name = name
        return cls
    return deco


def get(name: str) -> type:
    _import_all()
    if name not in _SCHEMES:
        raise KeyError(f"unknown scheme {name!r}; known: {', '.join(sorted(_SCHEMES))}")
    return _SCHEMES[name]


def names() -> list[str]:
    _import_all()
    return sorted(_SCHEMES)


def _import_all() -> None:
    from melano_tf.gan import dcgan, lapgan, mod  # noqa: F401  (registers the schemes)
