"""Numbers and table rows for the dashboard's markdown notes."""

from iasf_search.results.markdown import SPACER, number, table_row


def test_numbers_read_well():
    assert number(1234567) == "1,234,567"
    assert number(0.98123) == "0.9812"
    assert number(3.2e6) == "3,200,000"
    assert number(True) == "True" and number("x") == "x"


def test_table_cells_end_with_a_visible_gap_and_escape_pipes():
    assert table_row(["a", "b|c", "d"]) == f"| a{SPACER} | b\\|c{SPACER} | d |"
    assert table_row(["", "x"]) == "|  | x |"
