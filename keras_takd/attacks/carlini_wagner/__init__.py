"""Carlini & Wagner's L2, L0 and L-infinity attacks (arXiv:1608.04644), one module each.

`l2` runs the binary search over c batch by batch; `l0` and `linf` share the per-example
search of `search` (a pool of slots that compiled chunks of Adam steps advance). The public
entry points are `keras_takd.attacks.carlini_wagner_l2`, `carlini_wagner_l0` and
`carlini_wagner_linf`.
"""
