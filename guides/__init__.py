"""Guide families q(sigma | x) over insertion orders, all with the interface of :class:`guides.base.OrderGuide`."""
from guides.base import OrderGuide
from guides.binary_tree import BinaryTreeGuide
from guides.exact import ExactPosteriorGuide
from guides.left_to_right import LeftToRightGuide
from guides.outside_in import OutsideInGuide
from guides.plackett_luce import PlackettLuceGuide
from guides.right_to_left import RightToLeftGuide
from guides.sequential import SequentialGuide
from guides.uniform import UniformOrderGuide

__all__ = ["OrderGuide", "UniformOrderGuide", "LeftToRightGuide", "PlackettLuceGuide", "ExactPosteriorGuide",
           "BinaryTreeGuide", "SequentialGuide", "RightToLeftGuide", "OutsideInGuide"]
