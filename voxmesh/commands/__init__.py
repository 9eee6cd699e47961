"""One module per ``voxmesh`` verb. Each defines ``HELP`` (the one-line help), ``DESCRIPTION``
(what the verb does, shown by ``voxmesh VERB --help``), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). Handlers parse and print; the work lives in the stage
packages."""
