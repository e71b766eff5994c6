"""Building blocks for report sections, shared by the methods and the report page:
``plots`` (matplotlib charts as PNG), ``tokens`` (prompts as coloured spans), ``numbers``
(formatting) and ``html`` (escaped fragments from jinja2 templates).

Import the submodule you need; nothing here imports matplotlib until a chart is drawn.
"""

#: Dots per inch of every figure; pages show 100 CSS px per figure inch.
DPI = 130
