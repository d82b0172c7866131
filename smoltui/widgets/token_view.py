"""TokenView: text that grows token by token, each piece in its own colour, with a cursor over the tokens.

Built for streaming: `append` lays out only the new pieces at the end of the last line (a token never makes the
whole text wrap again), and a line is rendered once and cached until a piece on it changes. A click on a token
posts `TokenClicked`; the `cursor` token is drawn reversed. Pieces that are not tokens (a chat's "You:", a
prompt) are laid out the same way but take no cursor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

TAB = "    "
CURSOR_STYLE = Style(reverse=True, bold=True)


@dataclass
class Piece:
    """A run of text in one style; `token` is its token's index in the view, None for text that is no token."""

    text: str
    style: Style
    token: int | None = None


def clean_text(text: str) -> str:
    """`text` as it can be drawn: tabs as spaces, carriage returns dropped, other control characters as �."""
    out = text.replace("\t", TAB).replace("\r", "")
    return "".join(ch if ch == "\n" or ch >= " " else "\ufffd" for ch in out)


class TokenView(ScrollView, can_focus=True, inherit_bindings=False):
    """Wrapped, coloured text made of pieces, appended at the end; tokens can be pointed at (see module doc)."""

    DEFAULT_CSS = """
    TokenView {
        height: 1fr;
        background: transparent;
        overflow-x: hidden;
        overflow-y: auto;
        & > .token-view--placeholder { color: $foreground-muted; text-style: italic; }
    }
    """
    COMPONENT_CLASSES = {"token-view--placeholder"}
    BINDINGS = [  # left and right stay free for the screen's token cursor
        Binding("up", "scroll_up", "Scroll up", show=False),
        Binding("down", "scroll_down", "Scroll down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "scroll_end", "Bottom", show=False),
    ]

    class TokenClicked(Message):
        """A token of `view` was clicked."""

        def __init__(self, view: TokenView, token: int) -> None:
            super().__init__()
            self.view, self.token = view, token

        @property
        def control(self) -> TokenView:
            return self.view

    def __init__(self, placeholder: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._placeholder = placeholder
        self._pieces: list[Piece] = []
        self._token_pieces: list[int] = []  # token index -> its piece
        # Each line: (piece index, first char, end char) runs; and how many cells the line already holds.
        self._lines: list[list[tuple[int, int, int]]] = [[]]
        self._widths: list[int] = [0]
        self._piece_lines: list[tuple[int, int]] = []  # piece index -> (first line, last line)
        self._strips: dict[int, Strip] = {}
        self._layout_width = 0
        self._styles: dict[str, Style] = {}
        self._cursor: int | None = None
        self._follow = True  # keep the end in view as text comes, until the person scrolls up

    # -- content --------------------------------------------------------------------------------------------

    @property
    def token_count(self) -> int:
        return len(self._token_pieces)

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self._pieces)

    def token_text(self, token: int) -> str:
        return self._pieces[self._token_pieces[token]].text

    def token_style(self, token: int) -> Style:
        return self._pieces[self._token_pieces[token]].style

    @property
    def placeholder(self) -> str:
        return self._placeholder

    @placeholder.setter
    def placeholder(self, text: str) -> None:
        if text != self._placeholder:
            self._placeholder = text
            if not self._pieces:
                self.refresh()

    def clear(self) -> None:
        self._follow = True
        self._pieces.clear()
        self._token_pieces.clear()
        self._piece_lines.clear()
        self._cursor = None
        self._relayout()
        self.scroll_home(animate=False)

    def append(self, pieces: Iterable[tuple[str, str | Style, bool]]) -> None:
        """Add (text, style, is a token) pieces at the end and scroll along if the end was in view."""
        was_empty, first_line, scrolled_to = not self._pieces, len(self._lines) - 1, self.scroll_offset.y
        for text, style, is_token in pieces:
            piece = Piece(clean_text(text), self._style(style), len(self._token_pieces) if is_token else None)
            if is_token:
                self._token_pieces.append(len(self._pieces))
            self._pieces.append(piece)
            self._place(len(self._pieces) - 1)
        for y in range(first_line, len(self._lines)):
            self._strips.pop(y, None)
        self._grow(len(self._lines))
        if self._follow:  # forced: the scrollbar that allows scrolling may only come with the next layout
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)
        if was_empty or self.scroll_offset.y != scrolled_to:
            self.refresh()
        else:  # only the lines that changed are drawn again
            self.refresh_lines(first_line, len(self._lines) - first_line)

    def _grow(self, lines: int) -> None:
        """Make the scrollable height `lines`. Setting `virtual_size` lays the whole screen out again (~15 ms on a
        2-core machine, a new line every few tokens); that is needed only when the scrollbar comes or goes."""
        if lines == self.virtual_size.height:
            return
        size, height = Size(self._layout_width, lines), self.container_size.height
        if height and (self.virtual_size.height > height) == (lines > height):
            self.set_reactive(TokenView.virtual_size, size)
            if self.show_vertical_scrollbar:
                self.vertical_scrollbar.window_virtual_size = lines
        else:
            self.virtual_size = size

    def restyle(self, styles: Iterable[tuple[int, str | Style]]) -> None:
        """Give tokens new styles: (token index, style) pairs."""
        for token, style in styles:
            piece = self._token_pieces[token]
            self._pieces[piece].style = self._style(style)
            self._forget_lines(piece)
        self.refresh()

    def _style(self, style: str | Style) -> Style:
        if isinstance(style, Style):
            return style
        parsed = self._styles.get(style)
        if parsed is None:
            parsed = self._styles[style] = Style.parse(style) if style else Style()
        return parsed

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._follow = round(new_value) >= self.max_scroll_y  # scrolled up: stay there; back at the end: follow

    # -- the cursor ------------------------------------------------------------------------------------------

    @property
    def cursor(self) -> int | None:
        return self._cursor

    @cursor.setter
    def cursor(self, token: int | None) -> None:
        if token is not None:
            token = min(max(token, 0), self.token_count - 1) if self.token_count else None
        if token == self._cursor:
            return
        for old in (self._cursor, token):
            if old is not None:
                self._forget_lines(self._token_pieces[old])
        self._cursor = token
        if token is not None:
            first, last = self._piece_lines[self._token_pieces[token]]
            if first < self.scroll_offset.y or last >= self.scroll_offset.y + self.scrollable_content_region.height:
                self.scroll_to(y=max(0, first - self.scrollable_content_region.height // 2), animate=False)
        self.refresh()

    def token_at(self, x: int, y: int) -> int | None:
        """The token drawn at content cell (x, y) of the whole text (not of the visible part), if any."""
        if not 0 <= y < len(self._lines):
            return None
        at = 0
        for piece_index, start, end in self._lines[y]:
            piece = self._pieces[piece_index]
            width = cell_len(piece.text[start:end])
            if at <= x < at + width:
                return piece.token
            at += width
        return None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        token = self.token_at(offset.x + self.scroll_offset.x, offset.y + self.scroll_offset.y)
        if token is not None:
            event.stop()
            self.post_message(self.TokenClicked(self, token))

    # -- layout ----------------------------------------------------------------------------------------------

    def on_resize(self) -> None:
        if self.scrollable_content_region.width != self._layout_width:
            self._relayout()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def _relayout(self) -> None:
        self._layout_width = max(1, self.scrollable_content_region.width)
        self._lines, self._widths, self._piece_lines, self._strips = [[]], [0], [], {}
        for index in range(len(self._pieces)):
            self._place(index)
        self.virtual_size = Size(self._layout_width, len(self._lines))
        self.refresh()

    def _place(self, index: int) -> None:
        """Lay piece `index` out after everything before it: new lines at "\\n", wrapping at the width (between
        pieces when the piece fits on a line of its own, else inside it; a wrapped line drops a leading space)."""
        text, width = self._pieces[index].text, self._layout_width or 1
        first = len(self._lines) - 1
        start = 0
        while start <= len(text):
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            self._place_run(index, start, end, width)
            if end == len(text):
                break
            self._lines.append([])
            self._widths.append(0)
            start = end + 1
        while first < len(self._lines) - 1 and not any(run[0] == index for run in self._lines[first]):
            first += 1  # the piece wrapped before its first character
        self._piece_lines.append((first, len(self._lines) - 1))

    def _place_run(self, index: int, start: int, end: int, width: int) -> None:
        text = self._pieces[index].text
        while start < end:
            room = width - self._widths[-1]
            cells = cell_len(text[start:end])
            if cells <= room:
                self._lines[-1].append((index, start, end))
                self._widths[-1] += cells
                return
            if self._widths[-1] and cells <= width:  # the piece fits a line of its own: wrap before it
                carried = self._carry_word_start(width - cells) if text[start] != " " else False
                if not carried:
                    self._new_line()
                start += text[start] == " " and end - start > 1
                continue
            taken, cut = 0, start  # fill the line, then carry on with the rest
            while cut < end and taken + cell_len(text[cut]) <= room:
                taken += cell_len(text[cut])
                cut += 1
            if cut == start and self._widths[-1] == 0:  # a character wider than the whole line
                cut, taken = start + 1, cell_len(text[start])
            if cut > start:
                self._lines[-1].append((index, start, cut))
                self._widths[-1] += taken
            self._new_line()
            start = cut

    def _carry_word_start(self, room: int) -> bool:
        """Start a new line with the word the last line ends in, when the piece coming next continues that word:
        a word made of several tokens wraps whole. False (nothing moved) where the line ends between words, where
        the word is the whole line, or where the word's start does not fit in `room`."""
        line, old = self._lines[-1], len(self._lines) - 1
        moved_from, split = len(line), None  # runs from moved_from on move whole; split: where one is cut
        while moved_from:
            index, start, end = line[moved_from - 1]
            space = self._pieces[index].text.rfind(" ", start, end)
            if space >= 0:  # the word begins after this space
                split = space + 1 if space + 1 < end else None
                break
            moved_from -= 1
        if not moved_from:
            return False
        tail = line[moved_from:]
        if split is not None:
            index, start, end = line[moved_from - 1]
            tail.insert(0, (index, split, end))
            line[moved_from - 1] = (index, start, split)
        cells = sum(cell_len(self._pieces[index].text[start:end]) for index, start, end in tail)
        if not tail or cells > room:
            if split is not None:  # put the cut run back whole
                line[moved_from - 1] = (tail[0][0], line[moved_from - 1][1], tail[0][2])
            return False
        del line[moved_from:]
        self._widths[-1] -= cells
        self._new_line()
        self._lines[-1].extend(tail)
        self._widths[-1] = cells
        for position, (index, _, _) in enumerate(tail):
            first, _last = self._piece_lines[index]
            whole = split is None or position > 0
            self._piece_lines[index] = (old + 1 if whole and first == old else first, old + 1)
        return True

    def _new_line(self) -> None:
        self._lines.append([])
        self._widths.append(0)

    def _forget_lines(self, piece: int) -> None:
        if piece < len(self._piece_lines):
            first, last = self._piece_lines[piece]
            for y in range(first, last + 1):
                self._strips.pop(y, None)

    # -- drawing ---------------------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if not self._pieces:
            return self._placeholder_line(y, width, base)
        line = self.scroll_offset.y + y
        if line >= len(self._lines):
            return Strip.blank(width, base)
        strip = self._strips.get(line)
        if strip is None:
            segments = []
            for piece_index, start, end in self._lines[line]:
                piece = self._pieces[piece_index]
                style = piece.style if piece.token is None or piece.token != self._cursor else CURSOR_STYLE
                segments.append(Segment(piece.text[start:end], base + style))
            strip = self._strips[line] = Strip(segments, self._widths[line])
        return strip.crop_extend(0, width, base)

    def _placeholder_line(self, y: int, width: int, base: Style) -> Strip:
        if not self._placeholder:
            return Strip.blank(width, base)
        style = self.get_component_rich_style("token-view--placeholder")
        lines = Text(self._placeholder).wrap(self.app.console, max(1, width))
        if y >= len(lines):
            return Strip.blank(width, base)
        return Strip([Segment(lines[y].plain, style)]).crop_extend(0, width, base)
