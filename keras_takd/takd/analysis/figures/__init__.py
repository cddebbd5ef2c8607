"""Mandal & Guo's figures, drawing only: `panels` (a function per panel, on a given `ax`) and
`catalog` (a `FigureSpec` per figure; `build_figures`, `draw_all`, `write_figures`)."""
