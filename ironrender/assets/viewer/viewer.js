// ironrender's asset viewer, inlined into report.html after the vendored three.js bundle
// (window.IRONTHREE). It reads its data from <script type="application/json" id="iron-viewer-data">
// (written by ironrender/evaluation/viewer.py, which documents every field) and shows the
// exported model.glb as any glTF viewer would, with IRON's capture light: a point light of the
// recovered intensity I at the flash, radiance I / d^2 (three.js's physical point light, decay 2).
//
// The page's URL hash opens a given state, e.g. `report.html#view=0&light=flash&material=full`;
// with `snapshot`, the first frame is written into the page as a PNG data URL (#iron-snapshot),
// which is how scripts and tests read what the viewer drew.
function startViewer() {
  "use strict";
  const THREE = window.IRONTHREE;
  const data = JSON.parse(document.getElementById("iron-viewer-data").textContent);
  const root = document.getElementById("iron-viewer");
  const options = Object.fromEntries(
    location.hash.slice(1).split("&").filter(Boolean).map((kv) => {
      const [key, value] = kv.split("=");
      return [key, value === undefined ? "1" : decodeURIComponent(value)];
    })
  );

  // ------------------------------------------------------------------ renderer and scene
  const MIN_DISPLAY_WIDTH = 384;
  const canvas = root.querySelector("canvas");
  const renderer = new THREE.WebGLRenderer({
    canvas, antialias: true, preserveDrawingBuffer: true, powerPreference: "high-performance",
  });
  renderer.setPixelRatio(1); // one canvas pixel per photo pixel: the views compare 1:1
  renderer.outputColorSpace = THREE.SRGBColorSpace; // glTF textures are sRGB, light is linear
  renderer.toneMapping = THREE.LinearToneMapping; // exposure x radiance, clipped (= no curve at 0 EV)
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x000000);
  const camera = new THREE.PerspectiveCamera(40, 1, 0.01, 100);
  scene.add(camera);
  const flash = new THREE.PointLight(0xffffff, data.light_intensity, 0, 2);
  camera.add(flash); // the flash travels with the camera, as in the capture
  const controls = new THREE.OrbitControls(camera, canvas);
  controls.addEventListener("change", render);

  const pmrem = new THREE.PMREMGenerator(renderer);
  const environments = { studio: pmrem.fromScene(new THREE.RoomEnvironment(), 0.04).texture };
  if (data.envmap) environments.envmap = equirectangular(data.envmap);

  // The capture's envmap: float RGB rows top (up) to bottom in Mitsuba's lat-long layout,
  // u = atan2(x, -z) / 2pi. three.js reads u = atan2(z, x) / 2pi + 1/2 with v = 0 at the bottom:
  // the same map turned by a quarter (evaluation/viewer.py shifts the columns) and flipped here.
  function equirectangular(envmap) {
    const rgb = new Float32Array(base64Bytes(envmap.data).buffer);
    const rgba = new Float32Array(envmap.width * envmap.height * 4);
    for (let row = 0; row < envmap.height; row++) {
      const flipped = envmap.height - 1 - row;
      for (let col = 0; col < envmap.width; col++) {
        const src = (row * envmap.width + col) * 3, dst = (flipped * envmap.width + col) * 4;
        rgba.set(rgb.subarray(src, src + 3), dst);
        rgba[dst + 3] = 1;
      }
    }
    const texture = new THREE.DataTexture(rgba, envmap.width, envmap.height, THREE.RGBAFormat,
      THREE.FloatType);
    texture.mapping = THREE.EquirectangularReflectionMapping;
    texture.magFilter = texture.minFilter = THREE.LinearFilter;
    texture.needsUpdate = true;
    return pmrem.fromEquirectangular(texture).texture;
  }

  function base64Bytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  // ------------------------------------------------------------------ cameras
  // A held-out camera: OpenCV intrinsics and camera-to-world (x right, y down, z forward) to
  // three.js (y up, looking down -z): c2w diag(1, -1, -1), and the OpenGL projection of K with
  // its principal point, so that pixel (i + 1/2, j + 1/2) is the ray the photograph's pixel saw.
  function useView(index) {
    const view = data.views[index];
    // Small evaluation images are shown larger (the same camera, more pixels); a snapshot keeps
    // the evaluation's own pixels.
    const zoom = options.snapshot ? 1 : Math.max(1, MIN_DISPLAY_WIDTH / view.width);
    const width = Math.round(view.width * zoom), height = Math.round(view.height * zoom);
    setSize(width, height);
    const [fx, fy, cx, cy] = view.K.map((k) => k * zoom);
    const near = 0.01, far = 100;
    camera.projectionMatrix.set(
      2 * fx / width, 0, 1 - 2 * cx / width, 0,
      0, 2 * fy / height, 2 * cy / height - 1, 0,
      0, 0, -(far + near) / (far - near), -2 * far * near / (far - near),
      0, 0, -1, 0);
    camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
    camera.userData.fixedProjection = true;
    const c2w = new THREE.Matrix4().fromArray(view.c2w).transpose(); // row-major in the JSON
    c2w.multiply(new THREE.Matrix4().makeScale(1, -1, -1));
    c2w.decompose(camera.position, camera.quaternion, new THREE.Vector3());
    camera.up.set(0, 1, 0).applyQuaternion(camera.quaternion);
    const forward = new THREE.Vector3(0, 0, -1).applyQuaternion(camera.quaternion);
    const along = Math.max(-camera.position.dot(forward), 0.1); // closest approach to the centre
    controls.target.copy(camera.position).addScaledVector(forward, along);
    camera.updateMatrixWorld(true);
    flash.position.fromArray(view.flash_in_camera); // OpenCV camera frame -> three.js's:
    flash.position.y *= -1;
    flash.position.z *= -1;
    controls.update();
    const photo = document.getElementById(view.photo_id);
    const shown = root.querySelector(".photo");
    shown.src = photo ? photo.src : "";
    shown.hidden = !photo;
    shown.style.width = `${width}px`;
    root.querySelector(".view-name").textContent = `${view.name} (${index + 1}/${data.views.length})`;
    render();
  }

  function setSize(width, height) {
    renderer.setSize(width, height, true);
    camera.aspect = width / height;
  }

  // Orbiting changes the pose only; a free camera (no held-out view) gets three.js's own lens.
  camera.updateProjectionMatrix = function () {
    if (!this.userData.fixedProjection) THREE.PerspectiveCamera.prototype.updateProjectionMatrix.call(this);
  };

  // ------------------------------------------------------------------ materials
  const modes = {}; // name -> function(original material) -> material to show
  modes.full = (m) => m;
  modes.diffuse = (m) => Object.assign(m.clone(), { specularIntensity: 0 });
  modes.specular = (m) => Object.assign(m.clone(), { color: new THREE.Color(0, 0, 0), map: null });
  modes.normals = () => new THREE.MeshNormalMaterial();
  let meshes = [];

  function setMaterial(name) {
    for (const mesh of meshes) {
      const original = mesh.userData.original;
      mesh.material = modes[name](original);
    }
    render();
  }

  function setLight(name) {
    flash.visible = name === "flash" || root.querySelector(".with-flash").checked;
    scene.environment = environments[name] || null;
    render();
  }

  function render() {
    renderer.toneMappingExposure = Math.pow(2, Number(root.querySelector(".exposure").value));
    renderer.render(scene, camera);
  }

  // ------------------------------------------------------------------ user interface
  const lightSelect = root.querySelector(".light");
  for (const name of ["flash", "envmap", "studio"]) {
    if (name !== "flash" && !environments[name]) continue;
    lightSelect.add(new Option({ flash: "flash only", envmap: "environment map (evaluation)",
      studio: "neutral studio" }[name], name));
  }
  const materialSelect = root.querySelector(".material");
  let viewIndex = Math.min(Number(options.view || 0), data.views.length - 1);
  lightSelect.value = options.light || "flash";
  materialSelect.value = options.material || "full";
  if (options.exposure) root.querySelector(".exposure").value = options.exposure;
  lightSelect.onchange = () => setLight(lightSelect.value);
  materialSelect.onchange = () => setMaterial(materialSelect.value);
  root.querySelector(".with-flash").onchange = () => setLight(lightSelect.value);
  root.querySelector(".exposure").oninput = render;
  root.querySelector(".previous").onclick = () => useView(viewIndex = (viewIndex + data.views.length - 1) % data.views.length);
  root.querySelector(".next").onclick = () => useView(viewIndex = (viewIndex + 1) % data.views.length);

  // For scripts: frames per second while the asset turns (each frame finished before the next).
  window.ironViewer = {
    timeFrames(count) {
      const gl = renderer.getContext(), pixel = new Uint8Array(4);
      const start = performance.now();
      for (let i = 0; i < count; i++) {
        camera.position.sub(controls.target).applyAxisAngle(camera.up, (2 * Math.PI) / count)
          .add(controls.target);
        camera.lookAt(controls.target);
        render();
        gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel); // waits for the frame
      }
      return count / ((performance.now() - start) / 1000);
    },
  };

  new THREE.GLTFLoader().parse(base64Bytes(data.glb).buffer, "", (gltf) => {
    gltf.scene.traverse((node) => {
      if (node.isMesh) {
        node.userData.original = node.material;
        meshes.push(node);
      }
    });
    scene.add(gltf.scene);
    setMaterial(materialSelect.value);
    setLight(lightSelect.value);
    useView(viewIndex);
    root.dataset.ready = "true";
    if (options.snapshot) {
      const out = document.createElement("pre");
      out.id = "iron-snapshot";
      out.textContent = canvas.toDataURL("image/png");
      document.body.appendChild(out);
    }
  }, (error) => {
    root.querySelector(".view-name").textContent = `could not read model.glb: ${error}`;
    root.dataset.ready = "error";
  });
}

// The photographs the viewer shows sit further down the page: start once it is all parsed.
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startViewer);
else startViewer();
