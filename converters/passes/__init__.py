"""Graph passes shared by the sources: each is ``apply(graph) -> (graph, changed)`` on a SourceGraph, pure (the
input graph is left as it was) and described by its own docstring. A source opts in by giving the pass a table of
its own class and weight names; the pass never names a framework.
"""
