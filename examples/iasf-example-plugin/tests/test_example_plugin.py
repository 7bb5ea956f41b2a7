"""The example plugin passes iasf-search's contract checks."""

from iasf_example_plugin import Fourier, Maximum

from iasf_search.testing import check_fusion, check_op


def test_fourier_op_contract():
    check_op(Fourier())


def test_maximum_fusion_contract():
    check_fusion(Maximum())
