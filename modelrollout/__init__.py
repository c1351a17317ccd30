"""What runs several roles in one process, above `router/` and `controller/`: the `modelrollout` command
line (`cli`), the local no-cluster runtime (`local`), the demo, replay of a prediction log, the HTML report,
offline drift analysis of data files (`analyze`), the Grafana dashboard generator, the kubectl plugin
(`plugin/`) and small example model servers (`models/`).

`router` and `controller` never import each other or this package; this package imports both.
"""
