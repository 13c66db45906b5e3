"""Tools on top of the library: ``gemmconv compare`` (:mod:`.compare`, its command line :mod:`.cli` and plots
:mod:`.plot`) and the layer sets the benchmarks and the command line share (:mod:`.layers`)."""
