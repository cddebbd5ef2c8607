"""The analysis of Mandal & Guo's study: read once, compute once, then draw or write.

`tables` reads and checks the results and per-image CSVs (and holds the one rule for where a
per-image table lives); `statistics` computes every per-image statistic (which images count,
paired differences, intervals, trends); `figures` draws (matplotlib, one `FigureSpec` per
figure); `claims` sets our numbers beside each paper's claims; `summary` builds the terminal
summary's tables. The commands `keras_takd.takd.figures`, `.claims` and `.summary` call them;
only `figures` imports matplotlib. This package imports none of its modules, so reading a
table never loads a plotting library.
"""
