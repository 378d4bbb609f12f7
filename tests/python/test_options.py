"""Errors of options and arguments: each names the argument, shows the value with its type and
says what is accepted (the core checks the options once for Python and Node)."""

import coopcache
import pytest


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (
            {"cache_duration": "10"},
            TypeError,
            'invalid cache_duration: "10" (str); expected a number of seconds',
        ),
        ({"memory_limit": True}, TypeError, "invalid memory_limit: True (bool); expected"),
        ({"memory_limit": 1.5}, ValueError, "invalid memory_limit: 1.5 (float); expected"),
        (
            {"max_concurrency": 0},
            ValueError,
            "invalid max_concurrency: 0 (int); expected a whole number >= 1, or None",
        ),
        ({"when_full": "drop"}, ValueError, 'invalid when_full: "drop" (str); expected "reject" or "evict"'),
        (
            {"memoryLimit": 10},
            TypeError,
            "unexpected option 'memoryLimit' (options: memory_limit, cache_duration,",
        ),
        ({"memoryLimit": 10}, TypeError, "; did you mean 'memory_limit'?"),
    ],
)
def test_configure_errors_name_the_setting_its_value_and_type(kwargs: dict, error: type, text: str) -> None:
    with pytest.raises(error) as e:
        coopcache.configure("bad-options", **kwargs)
    assert text in str(e.value)
    assert "bad-options" not in coopcache.names()


def test_configure_needs_a_string_name() -> None:
    with pytest.raises(TypeError) as e:
        coopcache.configure(123)  # type: ignore[arg-type]
    assert str(e.value) == "invalid name: 123 (int); expected a cache name (a string)"


def one() -> int:
    """A function the decorator can key by its name (a lambda needs key=)."""
    return 1


@pytest.mark.parametrize("call", ["call", "decorator", "handle"])
def test_a_timeout_of_the_wrong_type_names_the_argument(name: str, call: str) -> None:
    with pytest.raises(TypeError) as e:
        if call == "call":
            coopcache.cached(name, "k", lambda: 1, timeout="1")  # type: ignore[arg-type]
        elif call == "decorator":
            coopcache.cached(name, timeout="1")(one)  # type: ignore[arg-type]
        else:
            coopcache.cache(name).cached("k", lambda: 1, timeout="1")  # type: ignore[arg-type]
    assert 'invalid timeout: "1" (str); expected a number of seconds >= 0, or None' in str(e.value)


def test_tags_errors_show_the_tag(name: str) -> None:
    with pytest.raises(TypeError, match=r'invalid tags: "user:1" \(str\); expected a list of strings \(wrap'):
        coopcache.cached(name, "k", lambda: 1, tags="user:1")
    with pytest.raises(TypeError, match=r"one is 1 \(int\)"):
        coopcache.cached(name, "k", lambda: 1, tags=[1])  # type: ignore[list-item]


def test_a_bare_decorator_fails_at_decoration_saying_what_to_write() -> None:
    def load(user_id: int) -> int:
        return user_id

    with pytest.raises(TypeError) as e:
        coopcache.cached(load)  # type: ignore[call-overload]
    assert '@coopcache.cached("cache-name")' in str(e.value) and "load" in str(e.value)


def test_unknown_cache_error_message_is_not_quoted() -> None:
    with pytest.raises(coopcache.UnknownCacheError) as e:
        coopcache.get("never-configured-options", 1)
    assert isinstance(e.value, KeyError)
    assert str(e.value).startswith('no cache named "never-configured-options" is configured')
