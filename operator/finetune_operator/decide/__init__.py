"""What a reconcile pass decides, with no I/O: from what it observed (`Snapshot`) to what it does
(`Decision`), and before that, whether the attempt changes or the children are to be made
(`children_step`). The controller observes, calls these, and carries the result out; every branch
of a pass is tested here as a table of situations and decisions (tests/unit/decide)."""
