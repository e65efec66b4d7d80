"""Tk options set only when they change.

Every ``configure`` of a label, and every ``itemconfigure`` or ``coords`` of
a canvas item, makes Tk lay out and redraw it when next idle, even when the
new value is the old one; under Xvfb a label's redraw costs ~0.2 ms. The
panels set their texts, fonts and bars on every answer (dozens per second
while the pen moves) and most of them do not change from one answer to the
next, so they go through an OptionCache, which makes the Tk call only for
what differs from the value it last set. No Tk import here: it works on any
object with those methods (tests use fakes).

The cache only knows what went through it: a widget configured elsewhere
must be forgotten (``forget``) before the cache sets it again.
"""


class OptionCache:
    def __init__(self):
        self._set = {}  # (widget or (canvas, item), option) -> value last set

    def configure(self, widget, **options) -> bool:
        """widget.configure(**options) for the options that changed; True if any did."""
        changed = self._changed(widget, options)
        if changed:
            widget.configure(**changed)
        return bool(changed)

    def itemconfigure(self, canvas, item, **options) -> bool:
        changed = self._changed((canvas, item), options)
        if changed:
            canvas.itemconfigure(item, **changed)
        return bool(changed)

    def coords(self, canvas, item, *coords) -> bool:
        changed = self._changed((canvas, item), {"coords": tuple(coords)})
        if changed:
            canvas.coords(item, *coords)
        return bool(changed)

    def forget(self, widget=None) -> None:
        """Forget what was set on ``widget`` (its items too), or on everything."""
        if widget is None:
            self._set.clear()
            return
        for key in [k for k in self._set if k[0] is widget or (isinstance(k[0], tuple)
                                                                and k[0][0] is widget)]:
            del self._set[key]

    def _changed(self, key, options: dict) -> dict:
        changed = {k: v for k, v in options.items() if self._set.get((key, k), _UNSET) != v}
        for k, v in changed.items():
            self._set[key, k] = v
        return changed


_UNSET = object()
