"""Loading YAML whose aliases cannot blow up: the 'billion laughs' guard of the policy file.

Anchors and aliases stay allowed (sharing a send window or a threshold map between policies is
what they are for). What is bounded is the expansion: the composed node graph, where an alias
is a shared node, is measured before any value is built, and a document standing for more
than `MAX_YAML_VALUES` values once its aliases are expanded (a 478-byte file can stand for a
billion), or an alias inside its own anchor, is refused. The check is linear in the file.
"""

from __future__ import annotations

import yaml

#: Values a policy file may stand for once its aliases are expanded (a real one: thousands).
MAX_YAML_VALUES = 200_000


class YamlExpansionError(Exception):
    """The YAML's aliases expand to too much (or to itself). `str()` is the problem."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` stands for once every alias in it is expanded (memoized on the
    shared nodes, so this is linear in the file, whatever the expansion)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise YamlExpansionError("a YAML alias refers to a value that contains it; remove the loop")
    open_nodes.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(key)
    if size > MAX_YAML_VALUES:
        raise YamlExpansionError(
            f"YAML expands to more than {MAX_YAML_VALUES} values through its aliases (*name); "
            "write the values out or share fewer of them"
        )
    sizes[key] = size
    return size


def load_bounded(raw: bytes, loader_class: type[yaml.SafeLoader]) -> object:
    """`yaml.load(raw, Loader=loader_class)` in its two steps, with the expansion checked
    between them: composing keeps aliases as shared nodes (cheap); only building the values
    (and validating them) would expand them. Raises `YamlExpansionError` or yaml's errors."""
    loader = loader_class(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()
