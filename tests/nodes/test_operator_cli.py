"""The operator CLI on the plain topics: a task refused for want of a current view is asked again."""

from __future__ import annotations

import io

from ivl_embodied.transport import msg_type

S = msg_type("ivl_embodied_msgs/msg/TaskStatus")


class _Node:
    ok = True

    def __init__(self, answers):
        self.answers, self.pending, self.sent = answers, [], []

    def now_ns(self) -> int:
        return 1

    def spin_once(self, timeout):  # the stack's answer arrives with the next spin
        self.statuses.extend(self.pending)
        self.pending.clear()

    def spin_until(self, cond, timeout):
        return cond()


class _Pub:
    def __init__(self, node):
        self.node = node

    def publish(self, msg):
        self.node.sent.append((msg.task_id, msg.instruction))
        if self.node.answers:
            state, reason = self.node.answers.pop(0)
            self.node.pending.append(S(task_id=msg.task_id, state=state, reason=reason, message=reason or "done"))


def _run(answers, retries=10):
    from ivl_embodied.nodes.operator_cli import run_task

    node, out = _Node(answers), io.StringIO()
    node.statuses = []
    final = run_task(node, _Pub(node), node.statuses, "put the red cube in the green bowl", 5.0, out, retries)
    return final, node.sent, out.getvalue()


def test_a_stale_view_is_asked_again_with_the_same_task_id_then_followed_to_its_end():
    final, sent, printed = _run([(S.STATE_REJECTED, "stale_embeddings"), (S.STATE_REJECTED, "no_embeddings"),
                                 (S.STATE_SUCCEEDED, "")])
    assert final == "SUCCEEDED" and len(sent) == 3 and len({t for t, _ in sent}) == 1
    assert printed.count("asking again in 1 s") == 2


def test_other_refusals_and_spent_retries_end_the_task():
    final, sent, _ = _run([(S.STATE_REJECTED, "unknown_words")])
    assert final == "REJECTED" and len(sent) == 1
    final, sent, printed = _run([(S.STATE_REJECTED, "no_embeddings")] * 3, retries=2)
    assert final == "REJECTED" and len(sent) == 3 and "[REJECTED] no_embeddings\n" in printed
