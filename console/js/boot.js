// Runs before the modules (a classic script): if the console cannot start (a script failed to load, an
// old browser without ES modules, an error while starting), the page says so instead of staying blank.
(function () {
  'use strict';
  function say(text) {
    var el = document.getElementById('boot-message');
    if (el) {
      el.textContent = text;
      el.className = 'boot-error';
    }
  }
  window.addEventListener('error', function (event) {
    var target = event.target;
    if (target && target !== window && (target.tagName === 'SCRIPT' || target.tagName === 'LINK')) {
      say('The console could not load ' + (target.src || target.href) + '. Is the hub still running?');
    } else {
      say('The console failed to start: ' + event.message);
    }
  }, true);
  window.setTimeout(function () {
    say('The console has not started after 15 seconds: this browser may not support JavaScript modules, or the hub is not answering.');
  }, 15000);
})();
