// The parts the benchmark suite is built from: Debian package metadata, helper
// processes, asset readers (GIMP patterns, fonts, SVG through rsvg-convert), UTF-8,
// and the compositing primitives.
#include <cstdlib>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "clr/core/error.h"
#include "clr/core/file_io.h"
#include "clr/core/process.h"
#include "clr/data/assets.h"
#include "clr/data/compose.h"
#include "clr/data/debian.h"
#include "test_util.h"

namespace clr {
namespace {

// A dpkg database in a temporary root: one package with two files and a copyright file.
void make_fake_root(const std::string& root) {
  make_directories(root + "/var/lib/dpkg/info");
  make_directories(root + "/usr/share/doc/pics");
  make_directories(root + "/usr/share/pics/animals");
  write_file_atomic(root + "/var/lib/dpkg/status",
                    "Package: other\nStatus: install ok installed\nVersion: 9\n\n"
                    "Package: pics\nStatus: install ok installed\nArchitecture: all\nVersion: 1.2-3\n\n"
                    "Package: gone\nStatus: deinstall ok config-files\nVersion: 4\n");
  write_file_atomic(root + "/var/lib/dpkg/info/pics.list",
                    "/usr\n/usr/share\n/usr/share/pics\n/usr/share/pics/animals\n/usr/share/pics/animals/cat.PNG\n"
                    "/usr/share/pics/animals/dog.svg\n/usr/share/doc/pics/copyright\n");
  write_file_atomic(root + "/usr/share/pics/animals/cat.PNG", "x");
  write_file_atomic(root + "/usr/share/pics/animals/dog.svg", "x");
  write_file_atomic(root + "/usr/share/doc/pics/copyright",
                    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                    "Files: *\nLicense: CC0-1.0\n\nFiles: debian/*\nLicense: GPL-2+\n\nLicense: CC0-1.0\n Text.\n");
}

TEST(Debian, ReadsVersionFilesAndLicencesFromTheDpkgDatabase) {
  test::TempDir root("dpkg");
  make_fake_root(root.path());
  const data::DebianPackage p = data::read_debian_package("pics", root.path());
  EXPECT_EQ(p.version, "1.2-3");
  EXPECT_EQ(p.licenses, (std::vector<std::string>{"CC0-1.0", "GPL-2+"}));
  EXPECT_EQ(p.files, (std::vector<std::string>{"/usr/share/doc/pics/copyright", "/usr/share/pics/animals/cat.PNG",
                                               "/usr/share/pics/animals/dog.svg"}));
  EXPECT_EQ(data::package_files(p, "/usr/share/pics/", {".png"}),
            (std::vector<std::string>{"/usr/share/pics/animals/cat.PNG"}));
  // Not installed, or only config files left: the message says how to install it.
  for (const char* name : {"nothere", "gone"}) {
    const std::string m = test::message_of<NotFoundError>([&] { data::read_debian_package(name, root.path()); });
    EXPECT_NE(m.find(std::string("apt-get install ") + name), std::string::npos) << m;
  }
}

TEST(Process, CapturesOutputAndExitCodeAndNamesAMissingProgram) {
  const ProcessResult r = run_process({"sh", "-c", "printf 'a b'; printf err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "a b");
  EXPECT_EQ(r.err, "err");
  // Arguments reach the program as they are (no shell in between).
  EXPECT_EQ(run_process({"printf", "%s|", "x y", "$HOME"}).out, "x y|$HOME|");
  // A program past its time is killed and reaped.
  const ProcessResult slow = run_process({"sleep", "20"}, "", 0.3);
  EXPECT_TRUE(slow.timed_out);
  EXPECT_EQ(slow.exit_code, 128 + 9);
  const std::string m = test::message_of<NotFoundError>([] { run_process({"no-such-program-clr"}, "install it"); });
  EXPECT_NE(m.find("no-such-program-clr"), std::string::npos);
  EXPECT_NE(m.find("install it"), std::string::npos);
}

TEST(Assets, ReadsGimpPatterns) {
  test::TempDir dir("pat");
  // Header: size 24 + name, version 1, 2x1 pixels, 3 bytes per pixel, "GPAT", "ab\0".
  std::string b;
  auto be = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b += static_cast<char>((v >> s) & 0xFF);
  };
  be(27);
  be(1);
  be(2);
  be(1);
  be(3);
  b += "GPAT";
  b += std::string("ab\0", 3);
  b += std::string("\xff\x00\x00\x00\x80\xff", 6);
  write_file_atomic(dir.file("p.pat"), b);
  const at::Tensor t = data::read_gimp_pattern(dir.file("p.pat"));
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_FLOAT_EQ(t[0][0][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(t[0][1][2].item<float>(), 1.0f);
  EXPECT_NEAR(t[0][1][1].item<float>(), 128 / 255.0, 1e-6);
  EXPECT_FLOAT_EQ(t[0][1][3].item<float>(), 1.0f);  // opaque
  write_file_atomic(dir.file("bad.pat"), b.substr(0, 30));
  EXPECT_THROW(data::read_gimp_pattern(dir.file("bad.pat")), FormatError);
}

TEST(Assets, Utf8RoundTrips) {
  const std::string text = "Aé€𝄞";
  const auto cps = data::utf8_codepoints(text);
  EXPECT_EQ(cps, (std::vector<uint32_t>{0x41, 0xE9, 0x20AC, 0x1D11E}));
  std::string back;
  for (uint32_t c : cps) back += data::utf8_encode(c);
  EXPECT_EQ(back, text);
  EXPECT_THROW(data::utf8_codepoints("\xC3"), FormatError);
}

TEST(Assets, RendersGlyphsAndReadsFontNames) {
  const std::string path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";  // fonts-dejavu-core (setup.sh)
  if (test::missing_system_data_allowed() && !file_exists(path)) GTEST_SKIP() << "fonts-dejavu-core not installed on this machine";
  ASSERT_TRUE(file_exists(path)) << "install fonts-dejavu-core";
  data::Font f(path);
  EXPECT_EQ(f.family(), "DejaVu Sans");
  EXPECT_EQ(f.style(), "Book");
  EXPECT_TRUE(f.has_glyph('A'));
  EXPECT_TRUE(f.has_glyph(0x3B1));    // alpha
  EXPECT_FALSE(f.has_glyph(0x4E00));  // no Han
  const at::Tensor a = f.render('A', 64);
  ASSERT_EQ(a.dim(), 2);
  EXPECT_GT(a.size(0), 30);
  EXPECT_LE(a.size(0), 64);
  EXPECT_GT(a.max().item<float>(), 0.99f);
  EXPECT_EQ(f.render(' ', 64).numel(), 0);
  EXPECT_EQ(f.render(0x4E00, 64).numel(), 0);
}

TEST(Assets, RendersSvgWithRsvgConvertAndCaches) {
  if (test::missing_system_data_allowed() && !program_in_path("rsvg-convert")) GTEST_SKIP() << "librsvg2-bin not installed on this machine";
  ASSERT_TRUE(program_in_path("rsvg-convert")) << "install librsvg2-bin (scripts/setup.sh does)";
  test::TempDir dir("svg");
  // A 100x50 page with a red 40x20 rectangle at (10, 10) and a blue element "b".
  write_file_atomic(dir.file("a.svg"),
                    "<svg xmlns='http://www.w3.org/2000/svg' width='100' height='50'>"
                    "<rect x='10' y='10' width='40' height='20' fill='#ff0000'/>"
                    "<rect id='b' x='60' y='5' width='10' height='30' fill='#0000ff'/></svg>");
  const at::Tensor whole = data::render_svg(dir.file("a.svg"), 120, "", dir.file("cache"));
  // Cropped to the content (the two rectangles), zoomed so the longer side is ~120.
  EXPECT_NEAR(static_cast<double>(whole.size(1)), 120.0, 3.0);
  EXPECT_NEAR(static_cast<double>(whole.size(0)) / whole.size(1), 30.0 / 60.0, 0.05);
  const at::Tensor b = data::render_svg(dir.file("a.svg"), 30, "b", dir.file("cache"));
  EXPECT_NEAR(static_cast<double>(b.size(0)), 30.0, 2.0);
  EXPECT_GT(b.select(2, 2).mean().item<double>(), 0.9);  // blue
  EXPECT_LT(b.select(2, 0).mean().item<double>(), 0.1);
  // The cache gives back the same pixels.
  EXPECT_TRUE(data::render_svg(dir.file("a.svg"), 30, "b", dir.file("cache")).equal(b));
  EXPECT_EQ(list_directory(dir.file("cache")).size(), 2u);
  const std::string m =
      test::message_of<FormatError>([&] { data::render_svg(dir.file("a.svg"), 30, "nope", ""); });
  EXPECT_NE(m.find("nope"), std::string::npos) << m;
}

TEST(Compose, RngIsTheSameEverywhereAndPasteCoversWhereItShould) {
  data::Rng a(42), b(42);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a.next(), b.next());
  data::Rng c(1);
  EXPECT_EQ(c.next(), 0x910a2dec89025cc1ull);  // SplitMix64's first output for seed 1
  EXPECT_NE(data::mix_seed(1, 2), data::mix_seed(2, 1));

  // An opaque white square pasted at the centre covering half the canvas.
  at::Tensor canvas = torch::zeros({32, 32, 3});
  const at::Tensor sprite = torch::ones({10, 10, 4});
  data::paste(canvas, sprite, 0.5, 0.5, 0.5, 0.0);
  EXPECT_FLOAT_EQ(canvas[16][16][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(canvas[2][2][0].item<float>(), 0.0f);
  EXPECT_NEAR(canvas.select(2, 0).sum().item<double>(), 16.0 * 16.0, 16.0);
  // A transparent sprite changes nothing.
  at::Tensor before = torch::rand({32, 32, 3});
  at::Tensor after = before.clone();
  data::paste(after, torch::zeros({8, 8, 4}), 0.3, 0.6, 0.8, 0.7);
  EXPECT_TRUE(after.allclose(before));
}

}  // namespace
}  // namespace clr
