"""The official `openai` Python package driving `cadence serve` (run by tests/serve/sdk.rs).

Usage: python3 sdk_client.py BASE_URL API_KEY WORK_DIR FIRST_FRAME_PNG
Prints one line per check; any failure raises (non-zero exit).
"""
import json
import subprocess
import sys
import warnings

import openai

# Every Videos API method is marked deprecated since the hosted API shut down; that is the
# point of this server.
warnings.simplefilter("ignore", DeprecationWarning)

base, key, work, png = sys.argv[1:5]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)

video = client.videos.create_and_poll(
    prompt="A presenter smiles at the camera and says: welcome to Cadence.",
    model="magihuman-distilled",
    size="64x64",
    seconds="1",
    extra_body={"seed": 7, "steps": 4},
)
assert video.status == "completed", video
assert (video.size, video.seconds, video.progress) == ("64x64", "1", 100), video
print("create_and_poll", video.id, video.status)

clip = f"{work}/clip.mp4"
client.videos.download_content(video.id).write_to_file(clip)
probe = json.loads(
    subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "json", clip],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
codecs = sorted(s["codec_name"] for s in probe["streams"])
assert codecs == ["aac", "h264"], codecs
print("download_content", codecs)

thumb = client.videos.download_content(video.id, variant="thumbnail").read()
assert thumb[:3] == b"\xff\xd8\xff", thumb[:8]
print("thumbnail", len(thumb))

got = client.videos.retrieve(video.id)
assert got.id == video.id and got.status == "completed" and got.model == "magihuman-distilled"
print("retrieve", got.id)

with open(png, "rb") as image:
    framed = client.videos.create_and_poll(
        prompt="She turns to the window.", input_reference=image, size="64x64", seconds="1"
    )
assert framed.status == "completed", framed
print("input_reference", framed.id)

page = client.videos.list(limit=1, order="asc")
assert [v.id for v in page.data] == [video.id] and page.has_more, page
rest = client.videos.list(after=video.id, order="asc")
assert [v.id for v in rest.data] == [framed.id], rest
print("list", [v.id for v in page.data + rest.data])

deleted = client.videos.delete(video.id)
assert deleted.deleted and deleted.id == video.id, deleted
print("delete", deleted.id)

try:
    client.videos.retrieve(video.id)
    raise AssertionError("a deleted video was found")
except openai.NotFoundError as e:
    print("not found", e.status_code)

try:
    openai.OpenAI(base_url=base + "/v1", api_key="wrong-key", max_retries=0).videos.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as e:
    print("authentication", e.status_code)

try:
    client.videos.create(prompt="x", model="sora-2")
    raise AssertionError("an unknown model was accepted")
except openai.BadRequestError as e:
    assert "magihuman-distilled" in str(e), e
    print("bad request", e.status_code)
