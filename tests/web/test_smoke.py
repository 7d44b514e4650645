from tests.conftest import Scene


async def test_staff_and_candidate_exchange_messages(scene: Scene) -> None:
    sent = await scene.alice.send(scene.conversation, "Hello **Cara**")
    assert sent.status_code == 201, sent.text
    reply = await scene.cara.send(scene.conversation, "Hi Alice")
    assert reply.status_code == 201, reply.text
    history = await scene.bob.history(scene.conversation)
    assert [m["seq"] for m in history] == [1, 2]
    assert history[0]["html"] == "<p>Hello <strong>Cara</strong></p>"
    assert history[1]["sender"] == {"kind": "candidate", "id": "cara", "name": "Cara"}
