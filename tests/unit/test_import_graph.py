"""The operator's modules, and the e2e harness's, import one another without a loop (issue 22): a module
of a pass is given the narrow `PassContext` and never imports the Controller back, the real node is
given the `ControlPlane` it joins, not `LocalCluster`, not even for their types (grimp counts
`TYPE_CHECKING` imports too, as a reader must)."""

from __future__ import annotations

import grimp


def _loops(package: str) -> list[tuple[str, str]]:
    graph = grimp.build_graph(package)
    return sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )


def test_no_module_of_the_operator_imports_itself_back_through_others() -> None:
    assert _loops("finetune_operator") == []


def test_no_module_of_the_e2e_harness_imports_itself_back_through_others() -> None:
    assert _loops("e2e") == []
