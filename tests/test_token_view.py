"""TokenView lays streamed tokens out as a person reads text: a word made of several tokens wraps whole, a word
longer than the line is cut, and the lines a token sits on stay known for the cursor."""

from __future__ import annotations

from textual.app import App, ComposeResult

from smoltui.widgets.token_view import TokenView

WIDTH = 20


class OneView(App[None]):
    CSS = "TokenView { scrollbar-size-vertical: 0; }"

    def compose(self) -> ComposeResult:
        yield TokenView(id="view")


async def layout(tokens: list[str], cursor: int | None = None) -> tuple[list[str], TokenView, int | None]:
    """The lines `tokens` make at WIDTH cells, the view, and (with `cursor`) the token found where it is drawn."""
    app = OneView()
    async with app.run_test(size=(WIDTH, 10)) as pilot:
        view = app.query_one(TokenView)
        view.append((token, "", True) for token in tokens)
        await pilot.pause()
        lines = [view.render_line(y).text.rstrip() for y in range(len(view._lines))]
        found = None
        if cursor is not None:
            text = view.token_text(cursor)
            y = next(y for y, line in enumerate(lines) if text in line)
            found = view.token_at(lines[y].index(text), y)
        return lines, view, found


async def test_a_word_split_into_tokens_wraps_whole():
    lines, view, _ = await layout(["Once", " upon", " a", " time", " a", " w", "izard", " spoke"])
    assert lines == ["Once upon a time a", "wizard spoke"]
    assert view._piece_lines[5] == (0, 1)  # " w": its space stays behind, its letter starts the next line
    assert view._piece_lines[6] == (1, 1)


async def test_a_token_holding_words_and_the_start_of_one_gives_that_start_to_the_next_line():
    lines, view, _ = await layout(["ab cd ef gh ij kl w", "izard"])
    assert lines == ["ab cd ef gh ij kl", "wizard"]
    assert view._piece_lines[0] == (0, 1)  # the token is on both lines now


async def test_a_word_longer_than_the_line_is_cut_and_nothing_is_lost():
    tokens = [" a", " supercalifragilistic", "expialidocious", " end"]
    lines, _, _ = await layout(tokens)
    assert all(len(line) <= WIDTH for line in lines)
    assert "".join(lines).replace(" ", "") == "".join(tokens).replace(" ", "")


async def test_a_word_that_is_the_whole_line_wraps_between_its_tokens():
    lines, _, _ = await layout(["abcdefghijklmnopq", "rstuv"])
    assert lines == ["abcdefghijklmnopq", "rstuv"]


async def test_the_cursor_finds_a_carried_token_where_it_is_drawn():
    _, _, found = await layout(["Once", " upon", " a", " time", " a", " w", "izard"], cursor=6)
    assert found == 6
